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
  args.weight_packed = static_cast<T const*>(buffers.weightPacked);
  args.split_k_counters = buffers.splitCounters;
  return args;
}

// Calls run(T{}) with the element type's CUDA type; fallback for an unknown type.
template <typename Run, typename Result>
Result dispatch(ElementType type, Run run, Result fallback) {
  switch (type) {
    case ElementType::kFloat32: return run(float{});
    case ElementType::kFloat16: return run(__half{});
    case ElementType::kBFloat16: return run(__nv_bfloat16{});
  }
  return fallback;
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
  return dispatch(
      type,
      [&](auto t) {
        return typedChannelsLastSupported<decltype(t)>(inChannels, outChannels, groups, deformableGroups);
      },
      false);
}

size_t forwardWorkspaceBytes(ElementType type, dcn::ConvGeometry const& geometry) {
  return dispatch(type, [&](auto t) { return dcn::forward_workspace_bytes<decltype(t)>(geometry); }, size_t{0});
}

size_t packedWeightBytes(ElementType type, dcn::ConvGeometry const& geometry) {
  return dispatch(
      type,
      [&](auto t) -> size_t {
        using T = decltype(t);
        if (!dcn::igemm_supported<T>(geometry)) return 0;  // the simple kernel reads the weights as given
        return dcn::igemm_packed_weight_elements<T>(geometry) * sizeof(T);
      },
      size_t{0});
}

int32_t splitCounterCount(ElementType type, dcn::ConvGeometry const& geometry) {
  return dispatch(type, [&](auto t) { return static_cast<int32_t>(dcn::igemm_counter_count<decltype(t)>(geometry)); },
                  int32_t{0});
}

cudaError_t packWeights(ElementType type, dcn::ConvGeometry const& geometry, void const* weight, void* packed,
                        cudaStream_t stream) {
  return dispatch(
      type,
      [&](auto t) {
        using T = decltype(t);
        return dcn::launch_igemm_pack_weights<T>(geometry, static_cast<T const*>(weight), static_cast<T*>(packed),
                                                 stream);
      },
      cudaErrorInvalidValue);
}

cudaError_t launchForward(ElementType type, ForwardBuffers const& buffers, dcn::ConvGeometry const& geometry,
                          void* workspace, cudaStream_t stream) {
  return dispatch(
      type,
      [&](auto t) {
        using T = decltype(t);
        return dcn::launch_forward<T>(typedArgs<T>(buffers, geometry), workspace, stream);
      },
      cudaErrorInvalidValue);
}

}  // namespace dcn_trt
