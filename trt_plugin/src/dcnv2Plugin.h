// TensorRT plugin for modulated deformable convolution (DCNv2), IPluginV3 family.
//
// Inputs: input, offset, mask, weight[, bias] (NCHW linear, all of one type: fp32, fp16 or
// bf16); one output. Name, version, namespace, inputs and fields come from
// dcn_ext/contract.json through the generated dcnv2Contract.h. The kernels are the shared
// header of dcn_ext, reached through dcnv2Launch.h.
#pragma once

#include <cstddef>
#include <string>
#include <vector>

#include "NvInferRuntime.h"
#include "dcnv2Fields.h"

namespace dcn_trt {

// The weights packed once and kept between enqueues, with split-K counters that are zero at
// rest: only when contract::kKeepPackedWeightsEnv is "1" (engines whose DCN weights are
// never refit). Freed with the plugin.
struct KeptWeights {
  KeptWeights() = default;
  KeptWeights(KeptWeights const&) = delete;
  KeptWeights& operator=(KeptWeights const&) = delete;
  ~KeptWeights();
  void const* source = nullptr;  // the weight pointer they were packed from
  void* packed = nullptr;
  size_t bytes = 0;
  int32_t* counters = nullptr;
  int32_t counterCount = 0;
  bool warnedCapture = false;
};

class DcnPlugin final : public nvinfer1::IPluginV3,
                        public nvinfer1::IPluginV3OneCore,
                        public nvinfer1::IPluginV3OneBuild,
                        public nvinfer1::IPluginV3OneRuntime {
 public:
  DcnPlugin(std::string layerName, DcnAttributes const& attributes);
  DcnPlugin(DcnPlugin const&) = delete;
  DcnPlugin& operator=(DcnPlugin const&) = delete;
  ~DcnPlugin() override = default;  // mKept frees its device memory

  // ============================== IPluginV3 ==============================
  nvinfer1::IPluginCapability* getCapabilityInterface(nvinfer1::PluginCapabilityType type) noexcept override;
  nvinfer1::IPluginV3* clone() noexcept override;

  // ============================== IPluginV3OneCore ==============================
  char const* getPluginName() const noexcept override;
  char const* getPluginVersion() const noexcept override;
  char const* getPluginNamespace() const noexcept override;

  // ============================== IPluginV3OneBuild ==============================
  int32_t getNbOutputs() const noexcept override;
  int32_t getOutputDataTypes(nvinfer1::DataType* outputTypes, int32_t nbOutputs,
                             nvinfer1::DataType const* inputTypes, int32_t nbInputs) const noexcept override;
  int32_t getOutputShapes(nvinfer1::DimsExprs const* inputs, int32_t nbInputs, nvinfer1::DimsExprs const* shapeInputs,
                          int32_t nbShapeInputs, nvinfer1::DimsExprs* outputs, int32_t nbOutputs,
                          nvinfer1::IExprBuilder& exprBuilder) noexcept override;
  bool supportsFormatCombination(int32_t pos, nvinfer1::DynamicPluginTensorDesc const* inOut, int32_t nbInputs,
                                 int32_t nbOutputs) noexcept override;
  int32_t configurePlugin(nvinfer1::DynamicPluginTensorDesc const* in, int32_t nbInputs,
                          nvinfer1::DynamicPluginTensorDesc const* out, int32_t nbOutputs) noexcept override;
  size_t getWorkspaceSize(nvinfer1::DynamicPluginTensorDesc const* inputs, int32_t nbInputs,
                          nvinfer1::DynamicPluginTensorDesc const* outputs, int32_t nbOutputs) const noexcept override;

  // ============================== IPluginV3OneRuntime ==============================
  int32_t onShapeChange(nvinfer1::PluginTensorDesc const* in, int32_t nbInputs, nvinfer1::PluginTensorDesc const* out,
                        int32_t nbOutputs) noexcept override;
  int32_t enqueue(nvinfer1::PluginTensorDesc const* inputDesc, nvinfer1::PluginTensorDesc const* outputDesc,
                  void const* const* inputs, void* const* outputs, void* workspace,
                  cudaStream_t stream) noexcept override;
  nvinfer1::IPluginV3* attachToContext(nvinfer1::IPluginResourceContext* context) noexcept override;
  nvinfer1::PluginFieldCollection const* getFieldsToSerialize() noexcept override;

 private:
  // Prefix of every message: which plugin, which layer.
  std::string who() const;

  std::string const mLayerName;
  DcnAttributes const mAttributes;
  // From contract::kKeepPackedWeightsEnv when the plugin is made (createPlugin, clone).
  bool const mKeepPackedWeights;
  KeptWeights mKept;
  // Inputs seen by configurePlugin/onShapeChange (4 or 5: the bias is optional); enqueue
  // is not told.
  int32_t mInputCount{-1};
  std::vector<nvinfer1::PluginField> mSerializedFields;
  nvinfer1::PluginFieldCollection mSerializedCollection{};
};

class DcnPluginCreator final : public nvinfer1::IPluginCreatorV3One {
 public:
  DcnPluginCreator();
  ~DcnPluginCreator() override = default;

  char const* getPluginName() const noexcept override;
  char const* getPluginVersion() const noexcept override;
  char const* getPluginNamespace() const noexcept override;
  nvinfer1::PluginFieldCollection const* getFieldNames() noexcept override;
  nvinfer1::IPluginV3* createPlugin(char const* name, nvinfer1::PluginFieldCollection const* fc,
                                    nvinfer1::TensorRTPhase phase) noexcept override;

 private:
  std::vector<nvinfer1::PluginField> mFieldNames;
  nvinfer1::PluginFieldCollection mFieldCollection{};
};

// Messages go to the logger TensorRT hands over in setLoggerFinder (stderr before that).
void logMessage(nvinfer1::ILogger::Severity severity, std::string const& message) noexcept;

}  // namespace dcn_trt
