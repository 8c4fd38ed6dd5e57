// Implicit-GEMM forward of modulated deformable convolution (framework-free).
// Shared by dcn_ext (PyTorch) and trt_plugin (TensorRT); dispatched from
// dcn::launch_forward in modulated_deform_conv.cuh.
#pragma once

#include <cstddef>
#include <cuda_runtime.h>
#include <cuda_fp16.h>
#include <cuda_bf16.h>

#include "dcn_params.h"

namespace dcn {

// True when launch_igemm_forward handles this geometry for element type T.
template <typename T>
bool igemm_supported(const ConvGeometry& geometry) {
  (void)geometry;
  return false;
}

// Bytes of device scratch launch_igemm_forward needs (0: pass nullptr).
template <typename T>
size_t igemm_workspace_bytes(const ConvGeometry& geometry) {
  (void)geometry;
  return 0;
}

template <typename T>
cudaError_t launch_igemm_forward(const ForwardArgs<T>& args, void* workspace, cudaStream_t stream) {
  (void)args;
  (void)workspace;
  (void)stream;
  return cudaErrorNotSupported;
}

}  // namespace dcn
