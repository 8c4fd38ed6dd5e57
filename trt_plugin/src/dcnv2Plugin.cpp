#include "dcnv2Plugin.h"

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <memory>
#include <new>
#include <stdexcept>

#include "dcnv2Launch.h"

namespace dcn_trt {

using nvinfer1::DataType;
using nvinfer1::DimsExprs;
using nvinfer1::DynamicPluginTensorDesc;
using nvinfer1::IDimensionExpr;
using nvinfer1::IExprBuilder;
using nvinfer1::ILogger;
using nvinfer1::IPluginCapability;
using nvinfer1::IPluginV3;
using nvinfer1::PluginField;
using nvinfer1::PluginFieldCollection;
using nvinfer1::PluginFieldType;
using nvinfer1::PluginTensorDesc;
using nvinfer1::TensorFormat;

namespace {

constexpr int32_t kSuccess = 0;
constexpr int32_t kFailure = -1;

std::atomic<nvinfer1::ILoggerFinder*> gLoggerFinder{nullptr};

char const* severityName(ILogger::Severity severity) {
  switch (severity) {
    case ILogger::Severity::kINTERNAL_ERROR: return "INTERNAL_ERROR";
    case ILogger::Severity::kERROR: return "ERROR";
    case ILogger::Severity::kWARNING: return "WARNING";
    case ILogger::Severity::kINFO: return "INFO";
    case ILogger::Severity::kVERBOSE: return "VERBOSE";
  }
  return "LOG";
}

// The body of every catch: turns the exception in flight into one logged line. Our own
// InvalidArgument already names the plugin, layer and method; anything else gets a prefix.
void reportCurrentException(char const* method, char const* layerName) noexcept {
  try {
    throw;
  } catch (InvalidArgument const& e) {
    logMessage(ILogger::Severity::kERROR, e.what());
  } catch (std::bad_alloc const&) {
    logMessage(ILogger::Severity::kERROR, "DCN plugin: out of host memory");
  } catch (std::exception const& e) {
    try {
      logMessage(ILogger::Severity::kERROR, std::string(contract::kPluginName) + " plugin '" + layerName + "': " +
                                                method + ": " + e.what());
    } catch (...) {
      logMessage(ILogger::Severity::kERROR, e.what());
    }
  } catch (...) {
    logMessage(ILogger::Severity::kERROR, "DCN plugin: unknown exception");
  }
}

// Only enumerators every TensorRT 10/11 header has are named (newer ones print as numbers),
// so the plugin builds against either.
std::string dataTypeName(DataType type) {
  switch (type) {
    case DataType::kFLOAT: return "kFLOAT";
    case DataType::kHALF: return "kHALF";
    case DataType::kBF16: return "kBF16";
    case DataType::kINT8: return "kINT8";
    case DataType::kINT32: return "kINT32";
    case DataType::kINT64: return "kINT64";
    case DataType::kBOOL: return "kBOOL";
    case DataType::kUINT8: return "kUINT8";
    case DataType::kFP8: return "kFP8";
    default: break;
  }
  return "DataType(" + std::to_string(static_cast<int32_t>(type)) + ")";
}

char const* pluginFieldTypeName(PluginFieldType type) {
  switch (type) {
    case PluginFieldType::kFLOAT16: return "kFLOAT16";
    case PluginFieldType::kFLOAT32: return "kFLOAT32";
    case PluginFieldType::kFLOAT64: return "kFLOAT64";
    case PluginFieldType::kINT8: return "kINT8";
    case PluginFieldType::kINT16: return "kINT16";
    case PluginFieldType::kINT32: return "kINT32";
    case PluginFieldType::kCHAR: return "kCHAR";
    case PluginFieldType::kDIMS: return "kDIMS";
    case PluginFieldType::kUNKNOWN: return "kUNKNOWN";
    case PluginFieldType::kBF16: return "kBF16";
    case PluginFieldType::kINT64: return "kINT64";
    default: break;
  }
  return "another PluginFieldType";
}

bool isSupportedType(DataType type) {
  return type == DataType::kFLOAT || type == DataType::kHALF || type == DataType::kBF16;
}

// The channels-last format of the input and output for a type: TensorRT's kHWC8 (16-bit
// types, channels padded to 8) or kHWC (fp32, unpadded). Their memory is [N][H][W][C]
// whenever C is a multiple of 8, which is the kernels' channels-last layout.
TensorFormat channelsLastFormat(DataType type) {
  return type == DataType::kFLOAT ? TensorFormat::kHWC : TensorFormat::kHWC8;
}

ElementType elementTypeOf(DataType type, std::string const& who) {
  switch (type) {
    case DataType::kFLOAT: return ElementType::kFloat32;
    case DataType::kHALF: return ElementType::kFloat16;
    case DataType::kBF16: return ElementType::kBFloat16;
    default: break;
  }
  throw InvalidArgument(who + ": data type " + dataTypeName(type) + " is not supported: expected kFLOAT, kHALF or kBF16");
}

// All inputs and outputs share the element type of the first input.
void checkTypes(DataType const* types, int32_t count, char const* what, DataType expected, std::string const& who) {
  for (int32_t i = 0; i < count; ++i) {
    if (types[i] != expected) {
      std::string const name = std::string(what) == "input" && i < contract::kInputCount
                                   ? contract::kInputNames[i]
                                   : std::string(what) + " " + std::to_string(i);
      throw InvalidArgument(who + ": " + name + " has type " + dataTypeName(types[i]) + ": expected " +
                            dataTypeName(expected) + " (all tensors of one type)");
    }
  }
}

Shape shapeOf(nvinfer1::Dims const& dims, std::string const& who) {
  if (dims.nbDims < 0 || dims.nbDims > kMaxDims) {
    throw InvalidArgument(who + ": a tensor has " + std::to_string(dims.nbDims) + " dims");
  }
  Shape shape{dims.nbDims, {}};
  for (int32_t i = 0; i < dims.nbDims; ++i) {
    shape.d[i] = dims.d[i] < 0 ? kUnknownDim : dims.d[i];
  }
  return shape;
}

void checkCounts(int32_t nbInputs, int32_t nbOutputs, std::string const& who) {
  if (nbInputs < contract::kInputCount - 1 || nbInputs > contract::kInputCount ||
      nbOutputs != contract::kOutputCount) {
    throw InvalidArgument(who + ": expected " + std::to_string(contract::kInputCount - 1) + " or " +
                          std::to_string(contract::kInputCount) + " inputs and " +
                          std::to_string(contract::kOutputCount) + " output: got: " + std::to_string(nbInputs) +
                          " inputs, " + std::to_string(nbOutputs) + " outputs");
  }
}

template <typename Desc, typename Get>
std::vector<Shape> shapesOf(Desc const* descs, int32_t count, Get get, std::string const& who) {
  if (descs == nullptr) {
    throw InvalidArgument(who + ": null tensor descriptions");
  }
  std::vector<Shape> shapes;
  for (int32_t i = 0; i < count; ++i) {
    shapes.push_back(shapeOf(get(descs[i]), who));
  }
  return shapes;
}

// IExprBuilder as an arithmetic for convOutputExtent.
class ExprArith {
 public:
  using Value = IDimensionExpr const*;
  explicit ExprArith(IExprBuilder& builder) : mBuilder(builder) {}
  Value constant(int64_t v) { return nonNull(mBuilder.constant(v)); }
  Value add(Value a, Value b) { return op(nvinfer1::DimensionOperation::kSUM, a, b); }
  Value sub(Value a, Value b) { return op(nvinfer1::DimensionOperation::kSUB, a, b); }
  Value mul(Value a, Value b) { return op(nvinfer1::DimensionOperation::kPROD, a, b); }
  Value floorDiv(Value a, Value b) { return op(nvinfer1::DimensionOperation::kFLOOR_DIV, a, b); }

 private:
  static Value nonNull(Value v) {
    if (v == nullptr) {
      throw std::runtime_error("IExprBuilder returned no expression");
    }
    return v;
  }
  Value op(nvinfer1::DimensionOperation operation, Value a, Value b) {
    return nonNull(mBuilder.operation(operation, *nonNull(a), *nonNull(b)));
  }
  IExprBuilder& mBuilder;
};

}  // namespace

void logMessage(ILogger::Severity severity, std::string const& message) noexcept {
  try {
    nvinfer1::ILoggerFinder* finder = gLoggerFinder.load();
    ILogger* logger = finder != nullptr ? finder->findLogger() : nullptr;
    if (logger != nullptr) {
      logger->log(severity, message.c_str());
      return;
    }
  } catch (...) {
    // fall through to stderr: a message must not be lost because the logger failed
  }
  std::fprintf(stderr, "[%s] %s\n", severityName(severity), message.c_str());
}

// =====================================================================================
// DcnPlugin
// =====================================================================================

DcnPlugin::DcnPlugin(std::string layerName, DcnAttributes const& attributes)
    : mLayerName(std::move(layerName)),
      mAttributes(attributes),
      mKeepPackedWeights(keepPackedWeights(std::getenv(contract::kKeepPackedWeightsEnv), who())) {}

KeptWeights::~KeptWeights() {
  // Errors cannot be reported from here; a failed free leaks, nothing else.
  if (packed != nullptr) (void)cudaFree(packed);
  if (counters != nullptr) (void)cudaFree(counters);
}

namespace {

void checkCuda(cudaError_t status, std::string const& what) {
  if (status != cudaSuccess) {
    throw std::runtime_error(what + " failed: " + cudaGetErrorName(status) + ": " + cudaGetErrorString(status));
  }
}

// Points `buffers` at the kept packed weights and counters, packing or growing them first
// where needed. That happens outside CUDA-graph capture only (no allocation may be
// captured): a capture that finds them missing packs into the workspace as without the
// setting. They are packed on this stream and waited for once, so that any stream may read
// them afterwards.
void useKeptWeights(KeptWeights& kept, ElementType type, dcn::ConvGeometry const& geometry, ForwardBuffers& buffers,
                    cudaStream_t stream, std::string const& w) {
  size_t const bytes = packedWeightBytes(type, geometry);
  if (bytes == 0) return;  // the simple kernel: nothing packed
  cudaStreamCaptureStatus capture = cudaStreamCaptureStatusNone;
  checkCuda(cudaStreamIsCapturing(stream, &capture), w + ": cudaStreamIsCapturing");
  bool const capturing = capture != cudaStreamCaptureStatusNone;
  if (kept.source != buffers.weight || kept.bytes != bytes) {
    if (capturing) {
      if (!kept.warnedCapture) {
        kept.warnedCapture = true;
        logMessage(ILogger::Severity::kWARNING,
                   w + ": " + contract::kKeepPackedWeightsEnv + "=1 but the weights were not packed before this "
                   "CUDA-graph capture: the captured graph packs them on every replay (run one enqueue first)");
      }
      return;
    }
    if (kept.packed != nullptr) checkCuda(cudaFree(kept.packed), w + ": cudaFree");
    kept.packed = nullptr;
    kept.source = nullptr;
    checkCuda(cudaMalloc(&kept.packed, bytes), w + ": cudaMalloc of " + std::to_string(bytes) + " bytes");
    checkCuda(packWeights(type, geometry, buffers.weight, kept.packed, stream), w + ": packing the weights");
    checkCuda(cudaStreamSynchronize(stream), w + ": packing the weights");
    kept.source = buffers.weight;
    kept.bytes = bytes;
    logMessage(ILogger::Severity::kINFO, w + ": weights packed once and kept (" + contract::kKeepPackedWeightsEnv +
                                             "=1; they must not change while the engine runs)");
  }
  buffers.weightPacked = kept.packed;
  int32_t const counters = splitCounterCount(type, geometry);
  if (counters > kept.counterCount) {
    if (capturing) return;  // this call's counters come from the workspace
    if (kept.counters != nullptr) checkCuda(cudaFree(kept.counters), w + ": cudaFree");
    kept.counters = nullptr;
    kept.counterCount = 0;
    size_t const counterBytes = static_cast<size_t>(counters) * sizeof(int32_t);
    void* allocated = nullptr;
    checkCuda(cudaMalloc(&allocated, counterBytes), w + ": cudaMalloc of the split-K counters");
    kept.counters = static_cast<int32_t*>(allocated);
    checkCuda(cudaMemsetAsync(kept.counters, 0, counterBytes, stream), w + ": zeroing the split-K counters");
    checkCuda(cudaStreamSynchronize(stream), w + ": zeroing the split-K counters");
    kept.counterCount = counters;
  }
  if (counters > 0) buffers.splitCounters = kept.counters;
}

}  // namespace

std::string DcnPlugin::who() const {
  return std::string(contract::kPluginNamespace) + "::" + contract::kPluginName + " plugin '" + mLayerName + "'";
}

// ============================== IPluginV3 ==============================

IPluginCapability* DcnPlugin::getCapabilityInterface(nvinfer1::PluginCapabilityType type) noexcept {
  try {
    switch (type) {
      case nvinfer1::PluginCapabilityType::kCORE: return static_cast<nvinfer1::IPluginV3OneCore*>(this);
      case nvinfer1::PluginCapabilityType::kBUILD: return static_cast<nvinfer1::IPluginV3OneBuild*>(this);
      case nvinfer1::PluginCapabilityType::kRUNTIME: return static_cast<nvinfer1::IPluginV3OneRuntime*>(this);
    }
    throw InvalidArgument(who() + ": getCapabilityInterface: unknown capability " +
                          std::to_string(static_cast<int32_t>(type)));
  } catch (...) {
    reportCurrentException("getCapabilityInterface", mLayerName.c_str());
  }
  return nullptr;
}

IPluginV3* DcnPlugin::clone() noexcept {
  try {
    auto copy = std::make_unique<DcnPlugin>(mLayerName, mAttributes);
    copy->mInputCount = mInputCount;
    return copy.release();
  } catch (...) {
    reportCurrentException("clone", mLayerName.c_str());
  }
  return nullptr;
}

// ============================== IPluginV3OneCore ==============================

char const* DcnPlugin::getPluginName() const noexcept { return contract::kPluginName; }

char const* DcnPlugin::getPluginVersion() const noexcept { return contract::kPluginVersion; }

char const* DcnPlugin::getPluginNamespace() const noexcept { return contract::kPluginNamespace; }

// ============================== IPluginV3OneBuild ==============================

int32_t DcnPlugin::getNbOutputs() const noexcept { return contract::kOutputCount; }

int32_t DcnPlugin::getOutputDataTypes(DataType* outputTypes, int32_t nbOutputs, DataType const* inputTypes,
                                      int32_t nbInputs) const noexcept {
  try {
    std::string const w = who() + ": getOutputDataTypes";
    checkCounts(nbInputs, nbOutputs, w);
    if (outputTypes == nullptr || inputTypes == nullptr) {
      throw InvalidArgument(w + ": null type array");
    }
    elementTypeOf(inputTypes[0], w);
    checkTypes(inputTypes, nbInputs, "input", inputTypes[0], w);
    outputTypes[0] = inputTypes[0];
    return kSuccess;
  } catch (...) {
    reportCurrentException("getOutputDataTypes", mLayerName.c_str());
  }
  return kFailure;
}

int32_t DcnPlugin::getOutputShapes(DimsExprs const* inputs, int32_t nbInputs, DimsExprs const* /*shapeInputs*/,
                                   int32_t /*nbShapeInputs*/, DimsExprs* outputs, int32_t nbOutputs,
                                   IExprBuilder& exprBuilder) noexcept {
  try {
    std::string const w = who() + ": getOutputShapes";
    checkCounts(nbInputs, nbOutputs, w);
    if (inputs == nullptr || outputs == nullptr) {
      throw InvalidArgument(w + ": null shape array");
    }
    // Whatever is already constant is checked now, so a bad model fails at build time
    // with a message, not at the first inference.
    std::vector<Shape> known;
    for (int32_t i = 0; i < nbInputs; ++i) {
      if (inputs[i].nbDims < 0 || inputs[i].nbDims > kMaxDims) {
        throw InvalidArgument(w + ": " + contract::kInputNames[i] + " has " + std::to_string(inputs[i].nbDims) +
                              " dims");
      }
      Shape shape{inputs[i].nbDims, {}};
      for (int32_t d = 0; d < inputs[i].nbDims; ++d) {
        IDimensionExpr const* e = inputs[i].d[d];
        shape.d[d] = (e != nullptr && e->isConstant()) ? e->getConstantValue() : kUnknownDim;
      }
      known.push_back(shape);
    }
    checkInputShapes(mAttributes, known.data(), nbInputs, w);

    using contract::Attribute;
    using contract::Input;
    DimsExprs const& x = inputs[static_cast<int32_t>(Input::kInput)];
    DimsExprs const& weight = inputs[static_cast<int32_t>(Input::kWeight)];
    ExprArith arith(exprBuilder);
    outputs[0].nbDims = 4;
    outputs[0].d[0] = x.d[0];
    outputs[0].d[1] = weight.d[0];
    for (int32_t axis = 0; axis < 2; ++axis) {
      outputs[0].d[2 + axis] = convOutputExtent(arith, x.d[2 + axis], weight.d[2 + axis],
                                                mAttributes.value(Attribute::kStride, axis),
                                                mAttributes.value(Attribute::kPadding, axis),
                                                mAttributes.value(Attribute::kDilation, axis));
    }
    return kSuccess;
  } catch (...) {
    reportCurrentException("getOutputShapes", mLayerName.c_str());
  }
  return kFailure;
}

bool DcnPlugin::supportsFormatCombination(int32_t pos, DynamicPluginTensorDesc const* inOut, int32_t nbInputs,
                                          int32_t nbOutputs) noexcept {
  try {
    // A query, not an error path: TensorRT asks about combinations we decline.
    if (inOut == nullptr || pos < 0 || pos >= nbInputs + nbOutputs) {
      return false;
    }
    using contract::Attribute;
    using contract::Input;
    PluginTensorDesc const& desc = inOut[pos].desc;
    if (pos > 0 && desc.type != inOut[0].desc.type) {
      return false;
    }
    if (pos == 0 && !isSupportedType(desc.type)) {
      return false;
    }
    // x (input 0) and y (the output) in one layout: NCHW, or channels-last where the
    // kernels read and write it in place (no NHWC copy of x per call, and no reformat
    // layers around the plugin when its neighbours run channels-last). The rest NCHW.
    bool const isX = pos == 0, isY = pos == nbInputs;
    if (!isX && !isY) {
      return desc.format == TensorFormat::kLINEAR;
    }
    if (isY) {
      return desc.format == inOut[0].desc.format;
    }
    if (desc.format == TensorFormat::kLINEAR) {
      return true;
    }
    if (desc.format != channelsLastFormat(desc.type) || nbInputs < static_cast<int32_t>(Input::kWeight) + 1) {
      return false;
    }
    nvinfer1::Dims const& x = desc.dims;
    nvinfer1::Dims const& weight = inOut[static_cast<int32_t>(Input::kWeight)].desc.dims;
    if (x.nbDims != 4 || weight.nbDims != 4 || x.d[1] < 1 || weight.d[0] < 1) {
      return false;  // channel counts unknown at build time
    }
    // kHWC8 pads channels to a multiple of 8: the output is plain NHWC only then.
    if (desc.type != DataType::kFLOAT && weight.d[0] % 8 != 0) {
      return false;
    }
    return channelsLastSupported(elementTypeOf(desc.type, who()), static_cast<int32_t>(x.d[1]),
                                 static_cast<int32_t>(weight.d[0]), mAttributes.value(Attribute::kGroups),
                                 mAttributes.value(Attribute::kDeformableGroup));
  } catch (...) {
    reportCurrentException("supportsFormatCombination", mLayerName.c_str());
  }
  return false;
}

int32_t DcnPlugin::configurePlugin(DynamicPluginTensorDesc const* in, int32_t nbInputs,
                                   DynamicPluginTensorDesc const* out, int32_t nbOutputs) noexcept {
  try {
    std::string const w = who() + ": configurePlugin";
    checkCounts(nbInputs, nbOutputs, w);
    auto const dims = [](DynamicPluginTensorDesc const& d) -> nvinfer1::Dims const& { return d.desc.dims; };
    std::vector<Shape> const shapes = shapesOf(in, nbInputs, dims, w);
    shapesOf(out, nbOutputs, dims, w);
    checkInputShapes(mAttributes, shapes.data(), nbInputs, w);
    std::vector<DataType> types;
    for (int32_t i = 0; i < nbInputs; ++i) {
      types.push_back(in[i].desc.type);
    }
    types.push_back(out[0].desc.type);
    elementTypeOf(types[0], w);
    checkTypes(types.data(), nbInputs, "input", types[0], w);
    checkTypes(&types[nbInputs], 1, "output", types[0], w);
    mInputCount = nbInputs;
    return kSuccess;
  } catch (...) {
    reportCurrentException("configurePlugin", mLayerName.c_str());
  }
  return kFailure;
}

size_t DcnPlugin::getWorkspaceSize(DynamicPluginTensorDesc const* inputs, int32_t nbInputs,
                                   DynamicPluginTensorDesc const* /*outputs*/, int32_t nbOutputs) const noexcept {
  try {
    std::string const w = who() + ": getWorkspaceSize";
    checkCounts(nbInputs, nbOutputs, w);
    // Enough for every problem of the profile, not only the largest (see profileGeometries).
    auto const minDims = [](DynamicPluginTensorDesc const& d) -> nvinfer1::Dims const& { return d.min; };
    auto const optDims = [](DynamicPluginTensorDesc const& d) -> nvinfer1::Dims const& { return d.opt; };
    auto const maxDims = [](DynamicPluginTensorDesc const& d) -> nvinfer1::Dims const& { return d.max; };
    std::vector<Shape> const low = shapesOf(inputs, nbInputs, minDims, w);
    std::vector<Shape> const opt = shapesOf(inputs, nbInputs, optDims, w);
    std::vector<Shape> const high = shapesOf(inputs, nbInputs, maxDims, w);
    ElementType const type = elementTypeOf(inputs[0].desc.type, w);
    size_t bytes = 0;
    for (dcn::ConvGeometry const& geometry :
         profileGeometries(mAttributes, low.data(), opt.data(), high.data(), nbInputs, w)) {
      bytes = std::max(bytes, forwardWorkspaceBytes(type, geometry));
    }
    return bytes;
  } catch (...) {
    reportCurrentException("getWorkspaceSize", mLayerName.c_str());
  }
  return 0;
}

// ============================== IPluginV3OneRuntime ==============================

int32_t DcnPlugin::onShapeChange(PluginTensorDesc const* in, int32_t nbInputs, PluginTensorDesc const* out,
                                 int32_t nbOutputs) noexcept {
  try {
    std::string const w = who() + ": onShapeChange";
    checkCounts(nbInputs, nbOutputs, w);
    auto const dims = [](PluginTensorDesc const& d) -> nvinfer1::Dims const& { return d.dims; };
    std::vector<Shape> const shapes = shapesOf(in, nbInputs, dims, w);
    std::vector<Shape> const outShapes = shapesOf(out, nbOutputs, dims, w);
    Shape const expected = checkInputShapes(mAttributes, shapes.data(), nbInputs, w);
    if (outShapes[0].nbDims != expected.nbDims || outShapes[0].d != expected.d) {
      throw InvalidArgument(w + ": output shape " + describe(outShapes[0]) + ": expected " + describe(expected));
    }
    mInputCount = nbInputs;
    return kSuccess;
  } catch (...) {
    reportCurrentException("onShapeChange", mLayerName.c_str());
  }
  return kFailure;
}

int32_t DcnPlugin::enqueue(PluginTensorDesc const* inputDesc, PluginTensorDesc const* outputDesc,
                           void const* const* inputs, void* const* outputs, void* workspace,
                           cudaStream_t stream) noexcept {
  try {
    std::string const w = who() + ": enqueue";
    if (mInputCount < 0) {
      throw InvalidArgument(w + ": called before configurePlugin/onShapeChange told the number of inputs");
    }
    if (inputs == nullptr || outputs == nullptr || outputDesc == nullptr) {
      throw InvalidArgument(w + ": null buffer arrays");
    }
    auto const dims = [](PluginTensorDesc const& d) -> nvinfer1::Dims const& { return d.dims; };
    std::vector<Shape> const shapes = shapesOf(inputDesc, mInputCount, dims, w);
    dcn::ConvGeometry const geometry = makeGeometry(mAttributes, shapes.data(), mInputCount, w);
    std::vector<DataType> types;
    for (int32_t i = 0; i < mInputCount; ++i) {
      types.push_back(inputDesc[i].type);
    }
    ElementType const type = elementTypeOf(types[0], w);
    checkTypes(types.data(), mInputCount, "input", types[0], w);
    checkTypes(&outputDesc[0].type, 1, "output", types[0], w);
    TensorFormat const layout = inputDesc[0].format;
    bool const channelsLast = layout != TensorFormat::kLINEAR;
    if ((channelsLast && layout != channelsLastFormat(types[0])) || outputDesc[0].format != layout) {
      throw InvalidArgument(w + ": input format " + std::to_string(static_cast<int32_t>(layout)) +
                            " and output format " + std::to_string(static_cast<int32_t>(outputDesc[0].format)) +
                            ": expected both kLINEAR, or both the type's channels-last format (kHWC8 for "
                            "kHALF/kBF16, kHWC for kFLOAT)");
    }
    if (geometry.batch == 0) {
      return kSuccess;  // an empty batch has nothing to compute
    }
    bool const hasBias = mInputCount == contract::kInputCount;
    for (int32_t i = 0; i < mInputCount; ++i) {
      if (inputs[i] == nullptr) {
        throw InvalidArgument(w + ": " + contract::kInputNames[i] + " has a null device pointer");
      }
    }
    if (outputs[0] == nullptr) {
      throw InvalidArgument(w + ": the output has a null device pointer");
    }
    size_t const scratch = forwardWorkspaceBytes(type, geometry);
    if (scratch > 0 && workspace == nullptr) {
      throw InvalidArgument(w + ": the kernel needs " + std::to_string(scratch) +
                            " bytes of workspace but TensorRT passed none");
    }
    using contract::Input;
    ForwardBuffers buffers{};
    buffers.input = inputs[static_cast<int32_t>(Input::kInput)];
    buffers.offset = inputs[static_cast<int32_t>(Input::kOffset)];
    buffers.mask = inputs[static_cast<int32_t>(Input::kMask)];
    buffers.weight = inputs[static_cast<int32_t>(Input::kWeight)];
    buffers.bias = hasBias ? inputs[static_cast<int32_t>(Input::kBias)] : nullptr;
    buffers.output = outputs[0];
    buffers.channelsLast = channelsLast;
    if (mKeepPackedWeights) useKeptWeights(mKept, type, geometry, buffers, stream, w);
    cudaError_t const status = launchForward(type, buffers, geometry, workspace, stream);
    if (status != cudaSuccess) {
      throw std::runtime_error(std::string("kernel launch failed (") + elementTypeName(type) +
                               (channelsLast ? ", channels-last" : "") + "): " + cudaGetErrorName(status) + ": " +
                               cudaGetErrorString(status));
    }
    return kSuccess;
  } catch (...) {
    reportCurrentException("enqueue", mLayerName.c_str());
  }
  return kFailure;
}

IPluginV3* DcnPlugin::attachToContext(nvinfer1::IPluginResourceContext* /*context*/) noexcept {
  // Self-contained kernels: no cuBLAS/cuDNN handle or allocator is needed from the context.
  return clone();
}

PluginFieldCollection const* DcnPlugin::getFieldsToSerialize() noexcept {
  try {
    mSerializedFields.clear();
    for (FieldView const& view : serializeFields(mAttributes)) {
      mSerializedFields.emplace_back(view.name, view.data, PluginFieldType::kINT32, view.length);
    }
    mSerializedCollection.nbFields = static_cast<int32_t>(mSerializedFields.size());
    mSerializedCollection.fields = mSerializedFields.data();
    return &mSerializedCollection;
  } catch (...) {
    reportCurrentException("getFieldsToSerialize", mLayerName.c_str());
  }
  return nullptr;
}

// =====================================================================================
// DcnPluginCreator
// =====================================================================================

DcnPluginCreator::DcnPluginCreator() {
  for (AttributeRule const& rule : attributeRules()) {
    mFieldNames.emplace_back(rule.name, nullptr, PluginFieldType::kINT32, serializedLength(rule.kind));
  }
  mFieldCollection.nbFields = static_cast<int32_t>(mFieldNames.size());
  mFieldCollection.fields = mFieldNames.data();
}

char const* DcnPluginCreator::getPluginName() const noexcept { return contract::kPluginName; }

char const* DcnPluginCreator::getPluginVersion() const noexcept { return contract::kPluginVersion; }

char const* DcnPluginCreator::getPluginNamespace() const noexcept { return contract::kPluginNamespace; }

PluginFieldCollection const* DcnPluginCreator::getFieldNames() noexcept { return &mFieldCollection; }

IPluginV3* DcnPluginCreator::createPlugin(char const* name, PluginFieldCollection const* fc,
                                          nvinfer1::TensorRTPhase phase) noexcept {
  char const* const layerName = name != nullptr ? name : "";
  try {
    std::string const who = std::string(contract::kPluginNamespace) + "::" + contract::kPluginName + " plugin '" +
                            layerName + "': createPlugin (" +
                            (phase == nvinfer1::TensorRTPhase::kBUILD ? "build" : "runtime") + " phase)";
    if (fc == nullptr) {
      throw InvalidArgument(who + ": no field collection");
    }
    if (fc->nbFields > 0 && fc->fields == nullptr) {
      throw InvalidArgument(who + ": " + std::to_string(fc->nbFields) + " fields announced, none given");
    }
    // Both phases go through the same parser: the build phase sees fields as the ONNX
    // parser passes them, the runtime phase what getFieldsToSerialize wrote.
    std::vector<FieldView> views;
    for (int32_t i = 0; i < fc->nbFields; ++i) {
      PluginField const& field = fc->fields[i];
      FieldType type = FieldType::kOther;
      if (field.type == PluginFieldType::kINT32) {
        type = FieldType::kInt32;
      } else if (field.type == PluginFieldType::kINT64) {
        type = FieldType::kInt64;
      }
      views.push_back(FieldView{field.name, type, field.data, field.length, pluginFieldTypeName(field.type)});
    }
    ParsedFields parsed = parseFields(views.data(), static_cast<int32_t>(views.size()), who);
    for (std::string const& warning : parsed.warnings) {
      logMessage(ILogger::Severity::kWARNING, warning);
    }
    return std::make_unique<DcnPlugin>(layerName, parsed.attributes).release();
  } catch (...) {
    reportCurrentException("createPlugin", layerName);
  }
  return nullptr;
}

}  // namespace dcn_trt

// =====================================================================================
// Library entry points (looked up by IPluginRegistry::loadLibrary, trtexec --dynamicPlugins,
// polygraphy --plugins). No link against libnvinfer: TensorRT hands us its logger.
// =====================================================================================

extern "C" __attribute__((visibility("default"))) void setLoggerFinder(nvinfer1::ILoggerFinder* finder) {
  dcn_trt::gLoggerFinder.store(finder);
}

extern "C" __attribute__((visibility("default"))) nvinfer1::IPluginCreatorInterface* const* getCreators(
    int32_t& nbCreators) {
  try {
    static dcn_trt::DcnPluginCreator creator;
    static nvinfer1::IPluginCreatorInterface* const creators[] = {&creator};
    nbCreators = 1;
    return creators;
  } catch (...) {
    dcn_trt::logMessage(nvinfer1::ILogger::Severity::kERROR, "DCN plugin library: could not create its creator");
  }
  nbCreators = 0;
  return nullptr;
}
