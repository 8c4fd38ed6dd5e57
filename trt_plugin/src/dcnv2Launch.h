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

// Untyped tensor pointers in the kernel's order; bias may be null.
struct ForwardBuffers {
  void const* input;
  void const* offset;
  void const* mask;
  void const* weight;
  void const* bias;
  void* output;
};

// Scratch bytes the kernel needs for `geometry` (what getWorkspaceSize reports).
size_t forwardWorkspaceBytes(ElementType type, dcn::ConvGeometry const& geometry);

// Launches the forward pass on `stream`; `workspace` holds forwardWorkspaceBytes bytes.
cudaError_t launchForward(ElementType type, ForwardBuffers const& buffers, dcn::ConvGeometry const& geometry,
                          void* workspace, cudaStream_t stream);

}  // namespace dcn_trt
