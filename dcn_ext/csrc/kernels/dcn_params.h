// Framework-free description of one modulated deformable convolution call.
// Shared by the PyTorch host (dcn_ext) and the TensorRT host (trt_plugin): both fill
// these structs from their own tensor types and call the launchers in the kernel headers.
#pragma once

#include <cstdint>

namespace dcn {

struct ConvGeometry {
  int batch;
  int in_channels;
  int height;
  int width;
  int out_channels;
  int kernel_h;
  int kernel_w;
  int stride_h;
  int stride_w;
  int pad_h;
  int pad_w;
  int dilation_h;
  int dilation_w;
  int groups;
  int deformable_groups;
  int out_height;  // (height + 2*pad_h - (dilation_h*(kernel_h-1)+1)) / stride_h + 1
  int out_width;
};

// All tensors NCHW contiguous (input/output: see channels_last below). offset: [N, 2*dg*kh*kw, Ho, Wo] (dy, dx per tap, row-major
// taps); mask: [N, dg*kh*kw, Ho, Wo]; weight: [Cout, Cin/groups, kh, kw]; bias: [Cout] or
// nullptr; output: [N, Cout, Ho, Wo]. Offsets and mask share T with the input; sampling
// coordinates, bilinear weights and accumulation are always fp32 (or fp64 for double); the
// implicit GEMM blends fp16 corners in half2 and multiplies fp32 as 3xTF32 (fp32-level error).
template <typename T>
struct ForwardArgs {
  const T* input;
  const T* offset;
  const T* mask;
  const T* weight;
  const T* bias;
  T* output;
  ConvGeometry geometry;
  // Implicit-GEMM kernel only (igemm_channels_last_supported / the launch fail otherwise):
  // input [N, H, W, C] and output [N, Ho, Wo, Cout] channels-last instead of NCHW, which
  // saves the NHWC copy of the input.
  bool channels_last = false;
  // Implicit-GEMM kernel only, optional state a caller keeps between calls: the weights
  // already packed by launch_igemm_pack_weights (no packing per call), and split-K tile
  // counters (igemm_counter_count ints) that are zero before the call and left zero after.
  const T* weight_packed = nullptr;
  int* split_k_counters = nullptr;
};

// Which forward kernel dcn::launch_forward runs. kAuto takes the implicit-GEMM kernel
// when igemm_supported<T>(geometry) says it handles the geometry, else the simple one;
// the other two force one kernel (kImplicitGemm fails with cudaErrorNotSupported where
// it does not apply). Tests and benchmarks force them to compare the two.
enum class ForwardAlgorithm { kAuto, kSimple, kImplicitGemm };

}  // namespace dcn
