// Drives the plugin library the way TensorRT does, without libnvinfer: dlopen, setLoggerFinder,
// getCreators, createPlugin (build phase, fields as the ONNX parser passes them), clone,
// getFieldsToSerialize, createPlugin (runtime phase), getOutputDataTypes, getOutputShapes
// (with a symbolic IExprBuilder), supportsFormatCombination, configurePlugin,
// getWorkspaceSize, attachToContext, onShapeChange, enqueue.
//
//   dcnv2_harness describe LIB
//       the creator's name, version, namespace and field names, as JSON
//   dcnv2_harness create LIB [--runtime] FIELD...
//       createPlugin with the given fields (build phase unless --runtime); on success the
//       clone / getFieldsToSerialize / runtime createPlugin round trip; JSON result
//   dcnv2_harness shapes LIB FIELD... -- TENSOR=DIMS...
//       getOutputShapes with symbolic dims ('?'), configurePlugin, and which layouts
//       supportsFormatCombination takes (NCHW; x and y channels-last; x alone; all); JSON
//   dcnv2_harness run LIB DIR
//       DIR/case.txt names the dtype, fields and one or more problems; each problem's inputs
//       are DIR/<problem>.<input>.bin (raw, dtype's bytes); writes DIR/<problem>.output.bin.
//       All problems go through ONE runtime plugin (shape changes between them).
//       "layout channels_last" offers the first input and the output in the type's
//       channels-last format (kHWC8 for fp16/bf16, kHWC for fp32; their .bin files then hold
//       [N][H][W][C]); a declined format combination is reported as
//       "declined_format_position". "again_with_zero_input NAME": after each problem, NAME's
//       device buffer is zeroed in place and the problem enqueued once more, its output
//       written to DIR/<problem>.output_again.bin (what a plugin that keeps data derived
//       from that input between enqueues shows). "time_enqueues N": after each problem's
//       first enqueue, N more are captured into a CUDA graph and replayed; the problem's
//       "enqueue_us" is the median GPU time per enqueue of 15 replays. "capture_first": each
//       problem's first enqueue is captured into a CUDA graph and launched (as an
//       application that captures without a warm-up enqueue).
//
// FIELD: name=1,2 (INT32, as the parser passes INT/INTS), name:f32=1.5 (FLOAT32),
// name:i64=1,2 (INT64), name= (INT32 with no values).
// Exit status: 0 when the plugin accepted everything, 1 when it reported a failure, 2 on
// harness misuse.
#include <dlfcn.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include <cuda_runtime_api.h>

#include "NvInferRuntime.h"

namespace {

using namespace nvinfer1;

// ---------------------------------------------------------------------------------------
// Logger handed to the plugin through setLoggerFinder
// ---------------------------------------------------------------------------------------

class RecordingLogger : public ILogger {
 public:
  void log(Severity severity, AsciiChar const* msg) noexcept override {
    std::fprintf(stderr, "[plugin %d] %s\n", static_cast<int>(severity), msg);
    if (severity <= Severity::kWARNING) {
      (severity == Severity::kWARNING ? warnings : errors).push_back(msg);
    }
  }
  std::vector<std::string> errors;
  std::vector<std::string> warnings;
};

class Finder : public ILoggerFinder {
 public:
  explicit Finder(ILogger* logger) : mLogger(logger) {}
  ~Finder() override = default;
  ILogger* findLogger() override { return mLogger; }

 private:
  ILogger* mLogger;
};

RecordingLogger gLogger;
Finder gFinder(&gLogger);

// ---------------------------------------------------------------------------------------
// A symbolic IExprBuilder (TensorRT's is internal): constants fold, symbols stay symbolic
// and are evaluated afterwards against the real dims.
// ---------------------------------------------------------------------------------------

class Expr : public IDimensionExpr {
 public:
  struct Node : apiv::VDimensionExpr {
    bool constant = false;
    int64_t value = 0;            // constant value
    std::string symbol;           // non-empty for a symbol
    DimensionOperation op{};      // for an operation
    Expr const* lhs = nullptr;
    Expr const* rhs = nullptr;
    bool isConstant() const override { return constant; }
    int64_t getConstantValue() const override { return constant ? value : INT64_MIN; }
    bool isSizeTensor() const override { return false; }
  };
  Expr() { mImpl = &mNode; }
  ~Expr() noexcept override = default;
  Node mNode;

  int64_t evaluate(std::map<std::string, int64_t> const& bindings) const {
    if (mNode.constant) {
      return mNode.value;
    }
    if (!mNode.symbol.empty()) {
      return bindings.at(mNode.symbol);
    }
    return apply(mNode.op, mNode.lhs->evaluate(bindings), mNode.rhs->evaluate(bindings));
  }
  std::string text() const {
    if (mNode.constant) {
      return std::to_string(mNode.value);
    }
    if (!mNode.symbol.empty()) {
      return mNode.symbol;
    }
    static char const* const names[] = {"+", "*", "max", "min", "-", "==", "<", "floordiv", "ceildiv"};
    return "(" + mNode.lhs->text() + " " + names[static_cast<int>(mNode.op)] + " " + mNode.rhs->text() + ")";
  }
  static int64_t apply(DimensionOperation op, int64_t a, int64_t b) {
    switch (op) {
      case DimensionOperation::kSUM: return a + b;
      case DimensionOperation::kPROD: return a * b;
      case DimensionOperation::kMAX: return a > b ? a : b;
      case DimensionOperation::kMIN: return a < b ? a : b;
      case DimensionOperation::kSUB: return a - b;
      case DimensionOperation::kEQUAL: return a == b;
      case DimensionOperation::kLESS: return a < b;
      case DimensionOperation::kFLOOR_DIV: {
        int64_t q = a / b;
        return (a % b != 0 && ((a < 0) != (b < 0))) ? q - 1 : q;
      }
      case DimensionOperation::kCEIL_DIV: return -apply(DimensionOperation::kFLOOR_DIV, -a, b);
    }
    return 0;
  }
};

class Builder : public IExprBuilder {
 public:
  struct Impl : apiv::VExprBuilder {
    Builder* owner = nullptr;
    IDimensionExpr const* constant(int64_t value) override { return owner->makeConstant(value); }
    IDimensionExpr const* operation(DimensionOperation op, IDimensionExpr const& first,
                                    IDimensionExpr const& second) override {
      return owner->makeOperation(op, static_cast<Expr const&>(first), static_cast<Expr const&>(second));
    }
    IDimensionExpr const* declareSizeTensor(int32_t, IDimensionExpr const&, IDimensionExpr const&) override {
      return nullptr;  // the DCN plugin has no size tensors
    }
  };
  Builder() {
    mBuilderImpl.owner = this;
    mImpl = &mBuilderImpl;
  }
  ~Builder() noexcept override = default;

  Expr const* makeConstant(int64_t value) {
    Expr* e = fresh();
    e->mNode.constant = true;
    e->mNode.value = value;
    return e;
  }
  Expr const* makeSymbol(std::string const& name) {
    Expr* e = fresh();
    e->mNode.symbol = name;
    return e;
  }
  Expr const* makeOperation(DimensionOperation op, Expr const& a, Expr const& b) {
    if (a.mNode.constant && b.mNode.constant) {
      return makeConstant(Expr::apply(op, a.mNode.value, b.mNode.value));
    }
    Expr* e = fresh();
    e->mNode.op = op;
    e->mNode.lhs = &a;
    e->mNode.rhs = &b;
    return e;
  }

 private:
  Expr* fresh() {
    mExprs.push_back(std::make_unique<Expr>());
    return mExprs.back().get();
  }
  Impl mBuilderImpl;
  std::vector<std::unique_ptr<Expr>> mExprs;
};

// ---------------------------------------------------------------------------------------
// Small helpers
// ---------------------------------------------------------------------------------------

[[noreturn]] void usage(std::string const& why) {
  std::fprintf(stderr, "dcnv2_harness: %s\n", why.c_str());
  std::exit(2);
}

std::string jsonString(std::string const& s) {
  std::string out = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (c == '\n') {
      out += "\\n";
    } else if (static_cast<unsigned char>(c) < 0x20) {
      out += ' ';
    } else {
      out += c;
    }
  }
  return out + "\"";
}

std::string jsonStrings(std::vector<std::string> const& items) {
  std::string out = "[";
  for (size_t i = 0; i < items.size(); ++i) {
    out += (i ? ", " : "") + jsonString(items[i]);
  }
  return out + "]";
}

std::vector<std::string> split(std::string const& s, char sep) {
  std::vector<std::string> parts;
  std::string part;
  std::istringstream in(s);
  while (std::getline(in, part, sep)) {
    parts.push_back(part);
  }
  return parts;
}

struct Library {
  IPluginCreatorV3One* creator = nullptr;
};

Library openLibrary(char const* path) {
  void* handle = dlopen(path, RTLD_NOW | RTLD_LOCAL);
  if (handle == nullptr) {
    usage(std::string("cannot load ") + path + ": " + dlerror());
  }
  using SetFinder = void (*)(ILoggerFinder*);
  using GetCreators = IPluginCreatorInterface* const* (*)(int32_t&);
  auto setFinder = reinterpret_cast<SetFinder>(dlsym(handle, "setLoggerFinder"));
  auto getCreators = reinterpret_cast<GetCreators>(dlsym(handle, "getCreators"));
  if (setFinder == nullptr || getCreators == nullptr) {
    usage(std::string(path) + " does not export setLoggerFinder and getCreators");
  }
  setFinder(&gFinder);
  int32_t count = 0;
  IPluginCreatorInterface* const* creators = getCreators(count);
  if (creators == nullptr || count != 1) {
    usage("expected exactly one creator, got " + std::to_string(count));
  }
  InterfaceInfo const info = creators[0]->getInterfaceInfo();
  if (std::string(info.kind) != "PLUGIN CREATOR_V3ONE" || info.major != 1) {
    usage(std::string("creator interface is ") + info.kind + ", expected PLUGIN CREATOR_V3ONE 1.x");
  }
  Library lib;
  lib.creator = static_cast<IPluginCreatorV3One*>(creators[0]);
  return lib;
}

// Field storage as the ONNX parser would build it.
struct FieldList {
  std::vector<std::string> names;
  std::vector<std::vector<int32_t>> i32;
  std::vector<std::vector<int64_t>> i64;
  std::vector<std::vector<float>> f32;
  std::vector<PluginField> fields;

  void add(std::string const& spec) {
    size_t const eq = spec.find('=');
    if (eq == std::string::npos) {
      usage("field spec needs '=': " + spec);
    }
    std::string name = spec.substr(0, eq);
    std::string type = "i32";
    size_t const colon = name.find(':');
    if (colon != std::string::npos) {
      type = name.substr(colon + 1);
      name = name.substr(0, colon);
    }
    std::vector<std::string> values = eq + 1 < spec.size() ? split(spec.substr(eq + 1), ',') : std::vector<std::string>{};
    names.push_back(name);
    i32.emplace_back();
    i64.emplace_back();
    f32.emplace_back();
    for (auto const& v : values) {
      if (type == "i32") {
        i32.back().push_back(static_cast<int32_t>(std::stol(v)));
      } else if (type == "i64") {
        i64.back().push_back(std::stoll(v));
      } else if (type == "f32") {
        f32.back().push_back(std::stof(v));
      } else {
        usage("unknown field type " + type);
      }
    }
    kinds.push_back(type);
  }
  PluginFieldCollection collection() {
    fields.clear();
    for (size_t i = 0; i < names.size(); ++i) {
      if (kinds[i] == "i32") {
        fields.emplace_back(names[i].c_str(), i32[i].empty() ? nullptr : i32[i].data(), PluginFieldType::kINT32,
                            static_cast<int32_t>(i32[i].size()));
      } else if (kinds[i] == "i64") {
        fields.emplace_back(names[i].c_str(), i64[i].data(), PluginFieldType::kINT64,
                            static_cast<int32_t>(i64[i].size()));
      } else {
        fields.emplace_back(names[i].c_str(), f32[i].data(), PluginFieldType::kFLOAT32,
                            static_cast<int32_t>(f32[i].size()));
      }
    }
    return PluginFieldCollection{static_cast<int32_t>(fields.size()), fields.data()};
  }
  std::vector<std::string> kinds;
};

std::string describeFields(PluginFieldCollection const* fc) {
  std::string out = "[";
  for (int32_t i = 0; fc != nullptr && i < fc->nbFields; ++i) {
    PluginField const& f = fc->fields[i];
    out += std::string(i ? ", " : "") + "{\"name\": " + jsonString(f.name) +
           ", \"type\": " + std::to_string(static_cast<int32_t>(f.type)) + ", \"length\": " + std::to_string(f.length);
    if (f.data != nullptr && f.type == PluginFieldType::kINT32) {
      out += ", \"values\": [";
      for (int32_t k = 0; k < f.length; ++k) {
        out += (k ? ", " : "") + std::to_string(static_cast<int32_t const*>(f.data)[k]);
      }
      out += "]";
    }
    out += "}";
  }
  return out + "]";
}

struct PluginDeleter {
  void operator()(IPluginV3* p) const { delete p; }
};
using PluginPtr = std::unique_ptr<IPluginV3, PluginDeleter>;

template <typename T>
T* capability(IPluginV3* plugin, PluginCapabilityType type) {
  IPluginCapability* c = plugin->getCapabilityInterface(type);
  if (c == nullptr) {
    usage("plugin has no capability interface " + std::to_string(static_cast<int>(type)));
  }
  return static_cast<T*>(c);
}

// Build-phase create -> clone -> getFieldsToSerialize -> runtime create. Returns the runtime
// plugin (null on failure) and reports the serialized fields.
struct RoundTrip {
  PluginPtr build;
  PluginPtr runtime;
  std::string serialized;
  bool ok = false;
};

RoundTrip roundTrip(Library const& lib, FieldList& fields, bool startAtRuntime) {
  RoundTrip rt;
  PluginFieldCollection fc = fields.collection();
  rt.build.reset(lib.creator->createPlugin("harness_layer", &fc,
                                           startAtRuntime ? TensorRTPhase::kRUNTIME : TensorRTPhase::kBUILD));
  if (!rt.build) {
    return rt;
  }
  auto* core = capability<IPluginV3OneCore>(rt.build.get(), PluginCapabilityType::kCORE);
  if (std::strcmp(core->getPluginName(), lib.creator->getPluginName()) != 0 ||
      std::strcmp(core->getPluginVersion(), lib.creator->getPluginVersion()) != 0 ||
      std::strcmp(core->getPluginNamespace(), lib.creator->getPluginNamespace()) != 0) {
    usage("plugin and creator disagree on name/version/namespace");
  }
  PluginPtr copy(rt.build->clone());
  if (!copy) {
    return rt;
  }
  auto* runtime = capability<IPluginV3OneRuntime>(copy.get(), PluginCapabilityType::kRUNTIME);
  PluginFieldCollection const* serialized = runtime->getFieldsToSerialize();
  if (serialized == nullptr) {
    return rt;
  }
  rt.serialized = describeFields(serialized);
  rt.runtime.reset(lib.creator->createPlugin("harness_layer", serialized, TensorRTPhase::kRUNTIME));
  rt.ok = rt.runtime != nullptr;
  return rt;
}

std::string resultJson(bool ok, std::string const& extra) {
  return std::string("{\"ok\": ") + (ok ? "true" : "false") + ", \"errors\": " + jsonStrings(gLogger.errors) +
         ", \"warnings\": " + jsonStrings(gLogger.warnings) + extra + "}";
}

// ---------------------------------------------------------------------------------------
// Commands
// ---------------------------------------------------------------------------------------

int describe(Library const& lib) {
  IPluginCreatorV3One* c = lib.creator;
  std::printf("{\"name\": %s, \"version\": %s, \"namespace\": %s, \"fields\": %s}\n",
              jsonString(c->getPluginName()).c_str(), jsonString(c->getPluginVersion()).c_str(),
              jsonString(c->getPluginNamespace()).c_str(), describeFields(c->getFieldNames()).c_str());
  return 0;
}

int create(Library const& lib, std::vector<std::string> const& args) {
  bool runtime = false;
  FieldList fields;
  for (auto const& a : args) {
    if (a == "--runtime") {
      runtime = true;
    } else {
      fields.add(a);
    }
  }
  RoundTrip rt = roundTrip(lib, fields, runtime);
  std::printf("%s\n", resultJson(rt.ok, rt.ok ? ", \"serialized\": " + rt.serialized : "").c_str());
  return rt.ok ? 0 : 1;
}

Dims dimsOf(std::vector<int64_t> const& d) {
  Dims dims{};
  dims.nbDims = static_cast<int32_t>(d.size());
  for (size_t i = 0; i < d.size(); ++i) {
    dims.d[i] = d[i];
  }
  return dims;
}

std::string dimsText(Dims const& d) {
  std::string s = "[";
  for (int32_t i = 0; i < d.nbDims; ++i) {
    s += (i ? ", " : "") + std::to_string(d.d[i]);
  }
  return s + "]";
}

// Type names the case file uses, and their sizes.
DataType dataTypeOf(std::string const& name) {
  if (name == "float32") return DataType::kFLOAT;
  if (name == "float16") return DataType::kHALF;
  if (name == "bfloat16") return DataType::kBF16;
  if (name == "int32") return DataType::kINT32;
  usage("unknown dtype " + name);
}
size_t elementBytes(DataType t) { return t == DataType::kFLOAT || t == DataType::kINT32 ? 4 : 2; }

int shapes(Library const& lib, std::vector<std::string> const& args) {
  FieldList fields;
  std::vector<std::string> tensorSpecs;
  bool afterSeparator = false;
  DataType type = DataType::kFLOAT;
  for (auto const& a : args) {
    if (a == "--") {
      afterSeparator = true;
    } else if (a.rfind("--dtype=", 0) == 0) {
      type = dataTypeOf(a.substr(8));
    } else if (afterSeparator) {
      tensorSpecs.push_back(a);
    } else {
      fields.add(a);
    }
  }
  RoundTrip rt = roundTrip(lib, fields, false);
  if (!rt.build) {
    std::printf("%s\n", resultJson(false, "").c_str());
    return 1;
  }
  auto* build = capability<IPluginV3OneBuild>(rt.build.get(), PluginCapabilityType::kBUILD);
  Builder builder;
  std::vector<DimsExprs> inputs;
  std::vector<DynamicPluginTensorDesc> descs;
  for (auto const& spec : tensorSpecs) {
    size_t const eq = spec.find('=');
    std::vector<std::string> dims = split(spec.substr(eq + 1), ',');
    DimsExprs e{};
    e.nbDims = static_cast<int32_t>(dims.size());
    DynamicPluginTensorDesc desc{};
    desc.desc.type = type;
    desc.desc.format = TensorFormat::kLINEAR;
    desc.desc.dims.nbDims = e.nbDims;
    for (size_t i = 0; i < dims.size(); ++i) {
      bool const symbolic = dims[i] == "?";
      e.d[i] = symbolic ? builder.makeSymbol(spec.substr(0, eq) + std::to_string(i))
                        : builder.makeConstant(std::stoll(dims[i]));
      desc.desc.dims.d[i] = symbolic ? -1 : std::stoll(dims[i]);
    }
    desc.min = desc.max = desc.opt = desc.desc.dims;
    inputs.push_back(e);
    descs.push_back(desc);
  }
  int32_t const n = static_cast<int32_t>(inputs.size());
  DimsExprs out{};
  int32_t status = build->getOutputShapes(inputs.data(), n, nullptr, 0, &out, 1, builder);
  std::string extra;
  if (status == 0) {
    std::vector<std::string> dims;
    for (int32_t i = 0; i < out.nbDims; ++i) {
      dims.push_back(static_cast<Expr const*>(out.d[i])->text());
    }
    extra += ", \"output\": " + jsonStrings(dims);
    DynamicPluginTensorDesc outDesc{};
    outDesc.desc.type = type;
    outDesc.desc.format = TensorFormat::kLINEAR;
    outDesc.desc.dims.nbDims = out.nbDims;
    for (int32_t i = 0; i < out.nbDims; ++i) {
      outDesc.desc.dims.d[i] = out.d[i]->isConstant() ? out.d[i]->getConstantValue() : -1;
    }
    status = build->configurePlugin(descs.data(), n, &outDesc, 1);
    extra += std::string(", \"configured\": ") + (status == 0 ? "true" : "false");
    std::vector<DataType> types(n, type);
    DataType outType{};
    if (status == 0) {
      status = build->getOutputDataTypes(&outType, 1, types.data(), n);
    }
    // supportsFormatCombination over every position, x (0) and y (n) in xy, the other
    // inputs in `rest`, as TensorRT asks while it picks formats.
    TensorFormat const channelsLast = type == DataType::kFLOAT ? TensorFormat::kHWC : TensorFormat::kHWC8;
    auto accepted = [&](TensorFormat x, TensorFormat y, TensorFormat rest) {
      std::vector<DynamicPluginTensorDesc> all(descs);
      all.push_back(outDesc);
      for (int32_t i = 1; i < n; ++i) all[i].desc.format = rest;
      all[0].desc.format = x;
      all[n].desc.format = y;
      for (int32_t pos = 0; pos <= n; ++pos) {
        if (!build->supportsFormatCombination(pos, all.data(), n, 1)) return false;
      }
      return true;
    };
    auto flag = [](bool b) { return std::string(b ? "true" : "false"); };
    extra += ", \"formats\": {\"linear\": " + flag(accepted(TensorFormat::kLINEAR, TensorFormat::kLINEAR, TensorFormat::kLINEAR)) +
             ", \"channels_last\": " + flag(accepted(channelsLast, channelsLast, TensorFormat::kLINEAR)) +
             ", \"channels_last_x_only\": " + flag(accepted(channelsLast, TensorFormat::kLINEAR, TensorFormat::kLINEAR)) +
             ", \"channels_last_everywhere\": " + flag(accepted(channelsLast, channelsLast, channelsLast)) + "}";
  }
  std::printf("%s\n", resultJson(status == 0, extra).c_str());
  return status == 0 ? 0 : 1;
}

struct Problem {
  std::string name;
  std::vector<std::string> inputNames;
  std::vector<std::vector<int64_t>> dims;
};

std::vector<char> readFile(std::string const& path, size_t bytes) {
  std::ifstream in(path, std::ios::binary);
  std::vector<char> data(bytes);
  if (!in.read(data.data(), static_cast<std::streamsize>(bytes))) {
    usage("cannot read " + std::to_string(bytes) + " bytes from " + path);
  }
  return data;
}

#define CUDA_CHECK(call)                                                                        \
  do {                                                                                          \
    cudaError_t e_ = (call);                                                                    \
    if (e_ != cudaSuccess) {                                                                    \
      std::fprintf(stderr, "CUDA error %s at %s:%d\n", cudaGetErrorString(e_), __FILE__, __LINE__); \
      std::exit(3);                                                                             \
    }                                                                                           \
  } while (0)

int run(Library const& lib, std::string const& dir) {
  std::ifstream spec(dir + "/case.txt");
  if (!spec) {
    usage("cannot open " + dir + "/case.txt");
  }
  FieldList fields;
  DataType type = DataType::kFLOAT;
  bool channelsLast = false;
  std::string zeroAgain;       // again_with_zero_input
  int32_t timedEnqueues = 0;  // time_enqueues
  bool captureFirst = false;  // capture_first
  std::vector<Problem> problems;
  std::string line;
  while (std::getline(spec, line)) {
    std::istringstream words(line);
    std::string key;
    words >> key;
    if (key == "dtype") {
      std::string t;
      words >> t;
      type = dataTypeOf(t);
    } else if (key == "layout") {
      std::string l;
      words >> l;
      if (l != "channels_last" && l != "nchw") {
        usage("unknown layout " + l);
      }
      channelsLast = l == "channels_last";
    } else if (key == "again_with_zero_input") {
      words >> zeroAgain;
    } else if (key == "time_enqueues") {
      words >> timedEnqueues;
    } else if (key == "capture_first") {
      captureFirst = true;
    } else if (key == "field") {
      std::string f;
      words >> f;
      fields.add(f);
    } else if (key == "problem") {
      problems.emplace_back();
      words >> problems.back().name;
    } else if (key == "input") {
      std::string name;
      words >> name;
      std::vector<int64_t> d;
      int64_t v;
      while (words >> v) {
        d.push_back(v);
      }
      problems.back().inputNames.push_back(name);
      problems.back().dims.push_back(d);
    }
  }
  if (problems.empty()) {
    usage("no problem in " + dir + "/case.txt");
  }
  RoundTrip rt = roundTrip(lib, fields, false);
  if (!rt.ok) {
    std::printf("%s\n", resultJson(false, "").c_str());
    return 1;
  }
  int32_t const n = static_cast<int32_t>(problems[0].dims.size());
  auto* build = capability<IPluginV3OneBuild>(rt.build.get(), PluginCapabilityType::kBUILD);

  // Build side: types, formats, symbolic shapes, a profile spanning every problem.
  TensorFormat const xyFormat =
      !channelsLast ? TensorFormat::kLINEAR : type == DataType::kFLOAT ? TensorFormat::kHWC : TensorFormat::kHWC8;
  std::vector<DataType> types(n, type);
  DataType outType{};
  bool ok = build->getOutputDataTypes(&outType, 1, types.data(), n) == 0 && outType == type;
  std::vector<DynamicPluginTensorDesc> inDescs(n);
  for (int32_t i = 0; i < n; ++i) {
    DynamicPluginTensorDesc& d = inDescs[i];
    d.desc.type = type;
    d.desc.format = i == 0 ? xyFormat : TensorFormat::kLINEAR;
    d.min = d.max = d.opt = d.desc.dims = dimsOf(problems[0].dims[i]);
    for (auto const& p : problems) {
      Dims const pd = dimsOf(p.dims[i]);
      for (int32_t k = 0; k < pd.nbDims; ++k) {
        d.min.d[k] = std::min(d.min.d[k], pd.d[k]);
        d.max.d[k] = std::max(d.max.d[k], pd.d[k]);
        if (pd.d[k] != d.desc.dims.d[k]) {
          d.desc.dims.d[k] = -1;  // a dynamic dim, as TensorRT shows it at build time
        }
      }
    }
  }
  Builder builder;
  std::vector<DimsExprs> exprs(n);
  std::map<std::string, int64_t> bindings;
  for (int32_t i = 0; i < n; ++i) {
    exprs[i].nbDims = inDescs[i].desc.dims.nbDims;
    for (int32_t k = 0; k < exprs[i].nbDims; ++k) {
      int64_t const v = inDescs[i].desc.dims.d[k];
      exprs[i].d[k] = v < 0 ? builder.makeSymbol("s" + std::to_string(i) + "_" + std::to_string(k))
                            : builder.makeConstant(v);
    }
  }
  DimsExprs outExpr{};
  ok = ok && build->getOutputShapes(exprs.data(), n, nullptr, 0, &outExpr, 1, builder) == 0;
  if (!ok) {
    std::printf("%s\n", resultJson(false, "").c_str());
    return 1;
  }
  std::vector<DynamicPluginTensorDesc> all(inDescs);
  DynamicPluginTensorDesc outDesc{};
  outDesc.desc.type = type;
  outDesc.desc.format = xyFormat;
  outDesc.desc.dims.nbDims = outExpr.nbDims;
  for (int32_t k = 0; k < outExpr.nbDims; ++k) {
    outDesc.desc.dims.d[k] = outExpr.d[k]->isConstant() ? outExpr.d[k]->getConstantValue() : -1;
  }
  all.push_back(outDesc);
  for (int32_t pos = 0; pos <= n && ok; ++pos) {
    if (!build->supportsFormatCombination(pos, all.data(), n, 1)) {
      std::printf("%s\n", resultJson(false, ", \"declined_format_position\": " + std::to_string(pos)).c_str());
      return 1;
    }
  }
  ok = ok && build->configurePlugin(inDescs.data(), n, &outDesc, 1) == 0;
  size_t const workspaceBytes = ok ? build->getWorkspaceSize(inDescs.data(), n, &outDesc, 1) : 0;
  if (!ok) {
    std::printf("%s\n", resultJson(false, "").c_str());
    return 1;
  }

  // Runtime side: one attached plugin runs every problem in turn.
  auto* runtimeOfDeserialized = capability<IPluginV3OneRuntime>(rt.runtime.get(), PluginCapabilityType::kRUNTIME);
  PluginPtr attached(runtimeOfDeserialized->attachToContext(nullptr));
  if (!attached) {
    std::printf("%s\n", resultJson(false, "").c_str());
    return 1;
  }
  auto* runtime = capability<IPluginV3OneRuntime>(attached.get(), PluginCapabilityType::kRUNTIME);
  void* workspace = nullptr;
  if (workspaceBytes > 0) {
    CUDA_CHECK(cudaMalloc(&workspace, workspaceBytes));
  }
  cudaStream_t stream;
  CUDA_CHECK(cudaStreamCreate(&stream));
  std::string extra = ", \"workspace_bytes\": " + std::to_string(workspaceBytes) + ", \"problems\": [";
  for (size_t p = 0; p < problems.size() && ok; ++p) {
    Problem const& problem = problems[p];
    std::vector<PluginTensorDesc> in(n);
    std::vector<void*> device(n, nullptr);
    std::vector<size_t> deviceBytes(n, 0);
    for (int32_t i = 0; i < n; ++i) {
      in[i].dims = dimsOf(problem.dims[i]);
      in[i].type = type;
      in[i].format = i == 0 ? xyFormat : TensorFormat::kLINEAR;
      in[i].scale = 1.0F;
      size_t elements = 1;
      for (int64_t d : problem.dims[i]) {
        elements *= static_cast<size_t>(d);
      }
      size_t const bytes = elements * elementBytes(type);
      std::vector<char> host = readFile(dir + "/" + problem.name + "." + problem.inputNames[i] + ".bin", bytes);
      deviceBytes[i] = bytes;
      CUDA_CHECK(cudaMalloc(&device[i], bytes > 0 ? bytes : 1));
      CUDA_CHECK(cudaMemcpy(device[i], host.data(), bytes, cudaMemcpyHostToDevice));
    }
    // The output's concrete shape from the symbolic one, as TensorRT would compute it.
    for (int32_t i = 0; i < n; ++i) {
      for (int32_t k = 0; k < exprs[i].nbDims; ++k) {
        bindings["s" + std::to_string(i) + "_" + std::to_string(k)] = problem.dims[i][k];
      }
    }
    PluginTensorDesc out{};
    out.type = type;
    out.format = xyFormat;
    out.scale = 1.0F;
    out.dims.nbDims = outExpr.nbDims;
    size_t outElements = 1;
    for (int32_t k = 0; k < outExpr.nbDims; ++k) {
      out.dims.d[k] = static_cast<Expr const*>(outExpr.d[k])->evaluate(bindings);
      outElements *= static_cast<size_t>(out.dims.d[k]);
    }
    size_t const outBytes = outElements * elementBytes(type);
    void* output = nullptr;
    CUDA_CHECK(cudaMalloc(&output, outBytes > 0 ? outBytes : 1));
    std::vector<void const*> inputPtrs(device.begin(), device.end());
    void* outputs[] = {output};
    auto enqueue = [&]() { return runtime->enqueue(in.data(), &out, inputPtrs.data(), outputs, workspace, stream) == 0; };
    // One enqueue (captured into a CUDA graph and launched, with capture_first), its output
    // written to DIR/<problem>.<suffix>.bin.
    auto enqueueAndSave = [&](char const* suffix, bool captured) {
      CUDA_CHECK(cudaMemset(output, 0xff, outBytes));  // NaN pattern: unwritten outputs show
      bool done = false;
      if (captured) {
        cudaGraph_t graph = nullptr;
        CUDA_CHECK(cudaStreamBeginCapture(stream, cudaStreamCaptureModeGlobal));
        done = enqueue();
        CUDA_CHECK(cudaStreamEndCapture(stream, &graph));
        if (done) {
          cudaGraphExec_t exec = nullptr;
          CUDA_CHECK(cudaGraphInstantiate(&exec, graph, 0));
          CUDA_CHECK(cudaGraphLaunch(exec, stream));
          CUDA_CHECK(cudaStreamSynchronize(stream));
          CUDA_CHECK(cudaGraphExecDestroy(exec));
        }
        CUDA_CHECK(cudaGraphDestroy(graph));
      } else {
        done = enqueue();
      }
      CUDA_CHECK(cudaStreamSynchronize(stream));
      if (done) {
        std::vector<char> host(outBytes);
        CUDA_CHECK(cudaMemcpy(host.data(), output, outBytes, cudaMemcpyDeviceToHost));
        std::ofstream(dir + "/" + problem.name + "." + suffix + ".bin", std::ios::binary)
            .write(host.data(), static_cast<std::streamsize>(outBytes));
      }
      return done;
    };
    ok = runtime->onShapeChange(in.data(), n, &out, 1) == 0;
    ok = ok && enqueueAndSave("output", captureFirst);
    std::string timing;
    if (ok && timedEnqueues > 0) {
      // GPU time per enqueue: CUDA events over replays of a graph of timedEnqueues enqueues
      // (after the one above, as TensorRT's warm-up), median of 15.
      cudaGraph_t graph = nullptr;
      CUDA_CHECK(cudaStreamBeginCapture(stream, cudaStreamCaptureModeGlobal));
      for (int32_t k = 0; k < timedEnqueues && ok; ++k) {
        ok = enqueue();
      }
      CUDA_CHECK(cudaStreamEndCapture(stream, &graph));
      if (ok) {
        cudaGraphExec_t exec = nullptr;
        CUDA_CHECK(cudaGraphInstantiate(&exec, graph, 0));
        cudaEvent_t start = nullptr, stop = nullptr;
        CUDA_CHECK(cudaEventCreate(&start));
        CUDA_CHECK(cudaEventCreate(&stop));
        for (int32_t k = 0; k < 3; ++k) {
          CUDA_CHECK(cudaGraphLaunch(exec, stream));
        }
        std::vector<float> perEnqueue;
        for (int32_t rep = 0; rep < 15; ++rep) {
          CUDA_CHECK(cudaEventRecord(start, stream));
          CUDA_CHECK(cudaGraphLaunch(exec, stream));
          CUDA_CHECK(cudaEventRecord(stop, stream));
          CUDA_CHECK(cudaEventSynchronize(stop));
          float ms = 0.F;
          CUDA_CHECK(cudaEventElapsedTime(&ms, start, stop));
          perEnqueue.push_back(ms * 1000.F / static_cast<float>(timedEnqueues));
        }
        std::sort(perEnqueue.begin(), perEnqueue.end());
        timing = ", \"enqueue_us\": " + std::to_string(perEnqueue[perEnqueue.size() / 2]);
        CUDA_CHECK(cudaEventDestroy(start));
        CUDA_CHECK(cudaEventDestroy(stop));
        CUDA_CHECK(cudaGraphExecDestroy(exec));
      }
      if (graph != nullptr) {
        CUDA_CHECK(cudaGraphDestroy(graph));
      }
    }
    if (ok) {
      extra += std::string(p ? ", " : "") + "{\"name\": " + jsonString(problem.name) +
               ", \"output_shape\": " + dimsText(out.dims) + timing + "}";
    }
    if (ok && !zeroAgain.empty()) {
      auto const named = std::find(problem.inputNames.begin(), problem.inputNames.end(), zeroAgain);
      if (named == problem.inputNames.end()) {
        usage("again_with_zero_input: no input named " + zeroAgain + " in problem " + problem.name);
      }
      size_t const i = static_cast<size_t>(named - problem.inputNames.begin());
      CUDA_CHECK(cudaMemset(device[i], 0, deviceBytes[i]));
      ok = enqueueAndSave("output_again", false);
    }
    for (void* d : device) {
      CUDA_CHECK(cudaFree(d));
    }
    CUDA_CHECK(cudaFree(output));
  }
  extra += "]";
  CUDA_CHECK(cudaStreamDestroy(stream));
  if (workspace != nullptr) {
    CUDA_CHECK(cudaFree(workspace));
  }
  std::printf("%s\n", resultJson(ok, extra).c_str());
  return ok ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3) {
    usage("usage: dcnv2_harness describe|create|shapes|run LIB [args...]");
  }
  std::string const command = argv[1];
  Library const lib = openLibrary(argv[2]);
  std::vector<std::string> const rest(argv + 3, argv + argc);
  if (command == "describe") return describe(lib);
  if (command == "create") return create(lib, rest);
  if (command == "shapes") return shapes(lib, rest);
  if (command == "run") {
    if (rest.size() != 1) usage("run LIB DIR");
    return run(lib, rest[0]);
  }
  usage("unknown command " + command);
}
