// Host-only entry points into the shared DCN kernels (dcn_ext/csrc/kernels), for the plugin.
//
// The plugin's .cpp includes this header and never device code; dcnv2Launch.cu is the one
// translation unit that includes the kernel header, so there is no second copy of a kernel.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cuda_runtime_api.h>

#include "dcn_params.h"

namespace dcn_trt {

// Element types the plugin runs in. Coordinates, interpolation and accumulation are fp32
// whatever the element type (the kernel header's rule).
enum class ElementType : int32_t { kFloat32, kFloat16, kBFloat16 };

char const* elementTypeName(ElementType type);

// Untyped tensor pointers in the kernel's order; bias may be null. channelsLast: input
// [N, H, W, C] and output [N, Ho, Wo, Cout] (offset, mask and weight stay NCHW).
struct ForwardBuffers {
  void const* input;
  void const* offset;
  void const* mask;
  void const* weight;
  void const* bias;
  void* output;
  bool channelsLast = false;
  // Kept between enqueues by the plugin (null: packed / zeroed in the workspace by this
  // call): the weights in the GEMM's layout (packWeights), and split-K tile counters that
  // are zero at rest (splitCounterCount of them).
  void const* weightPacked = nullptr;
  int32_t* splitCounters = nullptr;
};

// Whether the kernels on the current device read the input and write the output
// channels-last for these channel counts: the implicit GEMM's rule (compute capability 8.0
// or newer, groups == 1, each deformable group a multiple of the K step's channels: 64 for
// 16-bit types, 32 for fp32). Spatial sizes do not enter it.
bool channelsLastSupported(ElementType type, int32_t inChannels, int32_t outChannels, int32_t groups,
                           int32_t deformableGroups);

// Scratch bytes the kernel needs for `geometry` (what getWorkspaceSize reports).
size_t forwardWorkspaceBytes(ElementType type, dcn::ConvGeometry const& geometry);

// Bytes of the weights packed for the implicit GEMM for this geometry; 0 where the forward
// does not run it (the packed copy would not be read).
size_t packedWeightBytes(ElementType type, dcn::ConvGeometry const& geometry);

// Split-K tile counters the forward uses for this geometry (0: it does not split K).
int32_t splitCounterCount(ElementType type, dcn::ConvGeometry const& geometry);

// Packs `weight` ([Cout, Cin/groups, kh, kw]) into `packed` (packedWeightBytes bytes) on
// `stream`.
cudaError_t packWeights(ElementType type, dcn::ConvGeometry const& geometry, void const* weight, void* packed,
                        cudaStream_t stream);

// Launches the forward pass on `stream`; `workspace` holds forwardWorkspaceBytes bytes.
cudaError_t launchForward(ElementType type, ForwardBuffers const& buffers, dcn::ConvGeometry const& geometry,
                          void* workspace, cudaStream_t stream);

}  // namespace dcn_trt
