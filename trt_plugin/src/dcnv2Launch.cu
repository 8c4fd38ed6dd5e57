// The plugin's only CUDA translation unit: instantiates the shared kernel header for the
// element types the plugin supports and exposes them through dcnv2Launch.h.
#include "dcnv2Launch.h"

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "modulated_deform_conv.cuh"

namespace dcn_trt {

namespace {

template <typename T>
dcn::ForwardArgs<T> typedArgs(ForwardBuffers const& buffers, dcn::ConvGeometry const& geometry) {
  dcn::ForwardArgs<T> args{};
  args.input = static_cast<T const*>(buffers.input);
  args.offset = static_cast<T const*>(buffers.offset);
  args.mask = static_cast<T const*>(buffers.mask);
  args.weight = static_cast<T const*>(buffers.weight);
  args.bias = static_cast<T const*>(buffers.bias);
  args.output = static_cast<T*>(buffers.output);
  args.geometry = geometry;
  args.channels_last = buffers.channelsLast;
  return args;
}

template <typename T>
bool typedChannelsLastSupported(int32_t inChannels, int32_t outChannels, int32_t groups, int32_t deformableGroups) {
  // A nominal 3x3 layer on 8x8 pixels: the rule depends on the channels alone.
  dcn::ConvGeometry g{};
  g.batch = 1;
  g.in_channels = inChannels;
  g.out_channels = outChannels;
  g.height = g.width = g.out_height = g.out_width = 8;
  g.kernel_h = g.kernel_w = 3;
  g.stride_h = g.stride_w = g.dilation_h = g.dilation_w = 1;
  g.pad_h = g.pad_w = 1;
  g.groups = groups;
  g.deformable_groups = deformableGroups;
  return dcn::igemm_channels_last_supported<T>(g);
}

}  // namespace

char const* elementTypeName(ElementType type) {
  switch (type) {
    case ElementType::kFloat32: return "float32";
    case ElementType::kFloat16: return "float16";
    case ElementType::kBFloat16: return "bfloat16";
  }
  return "unknown";
}

bool channelsLastSupported(ElementType type, int32_t inChannels, int32_t outChannels, int32_t groups,
                           int32_t deformableGroups) {
  if (inChannels < 1 || outChannels < 1 || groups < 1 || deformableGroups < 1) return false;
  switch (type) {
    case ElementType::kFloat32: return typedChannelsLastSupported<float>(inChannels, outChannels, groups, deformableGroups);
    case ElementType::kFloat16: return typedChannelsLastSupported<__half>(inChannels, outChannels, groups, deformableGroups);
    case ElementType::kBFloat16:
      return typedChannelsLastSupported<__nv_bfloat16>(inChannels, outChannels, groups, deformableGroups);
  }
  return false;
}

size_t forwardWorkspaceBytes(ElementType type, dcn::ConvGeometry const& geometry) {
  switch (type) {
    case ElementType::kFloat32: return dcn::forward_workspace_bytes<float>(geometry);
    case ElementType::kFloat16: return dcn::forward_workspace_bytes<__half>(geometry);
    case ElementType::kBFloat16: return dcn::forward_workspace_bytes<__nv_bfloat16>(geometry);
  }
  return 0;
}

cudaError_t launchForward(ElementType type, ForwardBuffers const& buffers, dcn::ConvGeometry const& geometry,
                          void* workspace, cudaStream_t stream) {
  switch (type) {
    case ElementType::kFloat32:
      return dcn::launch_forward<float>(typedArgs<float>(buffers, geometry), workspace, stream);
    case ElementType::kFloat16:
      return dcn::launch_forward<__half>(typedArgs<__half>(buffers, geometry), workspace, stream);
    case ElementType::kBFloat16:
      return dcn::launch_forward<__nv_bfloat16>(typedArgs<__nv_bfloat16>(buffers, geometry), workspace, stream);
  }
  return cudaErrorInvalidValue;
}

}  // namespace dcn_trt
