// Modulated deformable convolution (DCNv2) CUDA kernels and their host launchers.
//
// Framework-free on purpose: the PyTorch host (dcn_ext/csrc/cuda) and the TensorRT host
// (trt_plugin) both include this one header and launch the same kernels, so the two
// cannot disagree numerically. Only CUDA headers and dcn_params.h are included here; each
// host turns its own tensors into raw pointers and a ConvGeometry.
//
// Sampling rule (identical to dcn_ext/reference.py, the float64 oracle): a sample is 0
// unless -1 < y < H and -1 < x < W; inside, the four neighbours are blended bilinearly and
// a neighbour outside the image counts as 0. Huge or infinite offsets land outside and give
// 0 without any out-of-bounds read (coordinates are range-checked before they become
// integers); a NaN coordinate gives NaN. Coordinates, bilinear weights and accumulation are
// fp32 for float/half/bfloat16 and fp64 for double: half-precision coordinate arithmetic is
// what costs other fp16 DCN kernels their accuracy at 100+ pixel feature maps.
#pragma once

#include <cuda_runtime.h>
#include <cuda_fp16.h>
#include <cuda_bf16.h>

#include <cstddef>
#include <cstdint>
#include <type_traits>

#include "dcn_params.h"
#include "modulated_deform_conv_igemm.cuh"

namespace dcn {

// ---------------------------------------------------------------------------------------
// Element type <-> accumulation type
// ---------------------------------------------------------------------------------------

template <typename T>
struct Convert;

template <>
struct Convert<float> {
  using Acc = float;
  __device__ __forceinline__ static float to_acc(float v) { return v; }
  __device__ __forceinline__ static float from_acc(float v) { return v; }
};

template <>
struct Convert<double> {
  using Acc = double;
  __device__ __forceinline__ static double to_acc(double v) { return v; }
  __device__ __forceinline__ static double from_acc(double v) { return v; }
};

template <>
struct Convert<__half> {
  using Acc = float;
  __device__ __forceinline__ static float to_acc(__half v) { return __half2float(v); }
  __device__ __forceinline__ static __half from_acc(float v) { return __float2half_rn(v); }
};

template <>
struct Convert<__nv_bfloat16> {
  using Acc = float;
  __device__ __forceinline__ static float to_acc(__nv_bfloat16 v) { return __bfloat162float(v); }
  __device__ __forceinline__ static __nv_bfloat16 from_acc(float v) {
    return __float2bfloat16_rn(v);
  }
};

template <typename T>
using AccumulateType = typename Convert<T>::Acc;

__device__ __forceinline__ float quiet_nan(float) { return __int_as_float(0x7fc00000); }
__device__ __forceinline__ double quiet_nan(double) {
  return __longlong_as_double(0x7ff8000000000000LL);
}

// ---------------------------------------------------------------------------------------
// Bilinear sampling point: computed once per (pixel, tap, deformable group) and reused for
// every channel of that deformable group.
// ---------------------------------------------------------------------------------------

template <typename Acc>
struct BilinearPoint {
  int64_t index[4];  // y*W + x of the corners (y0,x0) (y0,x0+1) (y0+1,x0) (y0+1,x0+1)
  Acc weight[4];
  bool valid[4];     // corner inside the image; invalid corners are never read
  bool undefined;    // a coordinate is NaN: the sample is NaN
  Acc frac_y;        // y - floor(y), x - floor(x): needed by the offset gradient
  Acc frac_x;
};

template <typename Acc>
__device__ __forceinline__ BilinearPoint<Acc> make_bilinear_point(Acc y, Acc x, int height,
                                                                  int width) {
  BilinearPoint<Acc> p;
  p.undefined = isnan(y) || isnan(x);
  p.frac_y = Acc(0);
  p.frac_x = Acc(0);
#pragma unroll
  for (int c = 0; c < 4; ++c) {
    p.index[c] = 0;
    p.weight[c] = Acc(0);
    p.valid[c] = false;
  }
  // False for NaN and +-inf, so only finite in-band coordinates reach the integer casts.
  const bool inside = y > Acc(-1) && y < Acc(height) && x > Acc(-1) && x < Acc(width);
  if (!inside) return p;
  const Acc y_floor = floor(y);
  const Acc x_floor = floor(x);
  const int y0 = static_cast<int>(y_floor);  // in [-1, height-1]
  const int x0 = static_cast<int>(x_floor);  // in [-1, width-1]
  const Acc ly = y - y_floor;
  const Acc lx = x - x_floor;
  const Acc hy = Acc(1) - ly;
  const Acc hx = Acc(1) - lx;
  p.frac_y = ly;
  p.frac_x = lx;
  p.weight[0] = hy * hx;
  p.weight[1] = hy * lx;
  p.weight[2] = ly * hx;
  p.weight[3] = ly * lx;
  const bool top = y0 >= 0;
  const bool bottom = y0 + 1 <= height - 1;
  const bool left = x0 >= 0;
  const bool right = x0 + 1 <= width - 1;
  p.valid[0] = top && left;
  p.valid[1] = top && right;
  p.valid[2] = bottom && left;
  p.valid[3] = bottom && right;
  const int64_t base = static_cast<int64_t>(y0) * width + x0;
  p.index[0] = base;
  p.index[1] = base + 1;
  p.index[2] = base + width;
  p.index[3] = base + width + 1;
  return p;
}

// The four corner values of one channel plane (0 for corners outside the image).
template <typename T, typename Acc>
__device__ __forceinline__ void load_corners(const T* plane, const BilinearPoint<Acc>& p,
                                             Acc values[4]) {
#pragma unroll
  for (int c = 0; c < 4; ++c) {
    values[c] = p.valid[c] ? Convert<T>::to_acc(plane[p.index[c]]) : Acc(0);
  }
}

template <typename T, typename Acc>
__device__ __forceinline__ Acc sample_bilinear(const T* plane, const BilinearPoint<Acc>& p) {
  if (p.undefined) return quiet_nan(Acc(0));
  Acc value = Acc(0);
#pragma unroll
  for (int c = 0; c < 4; ++c) {
    if (p.valid[c]) value += p.weight[c] * Convert<T>::to_acc(plane[p.index[c]]);
  }
  return value;
}

// Sampling coordinates of tap (i, j) for output pixel (ho, wo) before the learned offset.
__device__ __forceinline__ int base_y(const ConvGeometry& g, int ho, int i) {
  return ho * g.stride_h - g.pad_h + i * g.dilation_h;
}
__device__ __forceinline__ int base_x(const ConvGeometry& g, int wo, int j) {
  return wo * g.stride_w - g.pad_w + j * g.dilation_w;
}

// One (deformable group, tap, output pixel) of one image, decoded from a flat thread index,
// with the indices of its offset pair and mask value.
struct TapPosition {
  int dg, k, i, j, ho, wo;
  int64_t location, offset_y_index, mask_index;
};

__device__ __forceinline__ TapPosition decode_tap_position(int64_t item, const ConvGeometry& g) {
  const int taps = g.kernel_h * g.kernel_w;
  const int64_t length = static_cast<int64_t>(g.out_height) * g.out_width;
  TapPosition pos;
  pos.location = item % length;
  pos.k = static_cast<int>((item / length) % taps);
  pos.dg = static_cast<int>(item / (length * taps));
  pos.ho = static_cast<int>(pos.location / g.out_width);
  pos.wo = static_cast<int>(pos.location % g.out_width);
  pos.i = pos.k / g.kernel_w;
  pos.j = pos.k - pos.i * g.kernel_w;
  pos.offset_y_index = (static_cast<int64_t>(pos.dg) * 2 * taps + 2 * pos.k) * length +
                       pos.location;
  pos.mask_index = (static_cast<int64_t>(pos.dg) * taps + pos.k) * length + pos.location;
  return pos;
}

template <typename T>
__device__ __forceinline__ BilinearPoint<T> tap_point(const TapPosition& pos, const T* offset,
                                                      const ConvGeometry& g) {
  const int64_t length = static_cast<int64_t>(g.out_height) * g.out_width;
  const T y = T(base_y(g, pos.ho, pos.i)) + offset[pos.offset_y_index];
  const T x = T(base_x(g, pos.wo, pos.j)) + offset[pos.offset_y_index + length];
  return make_bilinear_point<T>(y, x, g.height, g.width);
}

// ---------------------------------------------------------------------------------------
// Simple forward kernel (the fallback and the reference CUDA path).
//
// One thread per output pixel and tile of kOutTile output channels of one conv group: the
// sample of each (input channel, tap) is computed once and multiplied into kOutTile
// accumulators, so sampling is not repeated per output channel. No workspace.
// grid.x covers N*Ho*Wo pixels, grid.y covers groups * ceil((Cout/groups) / kOutTile).
// ---------------------------------------------------------------------------------------

constexpr int kSimpleForwardThreads = 128;
constexpr int kSimpleForwardOutTile = 16;

template <typename T, int kOutTile>
__global__ void __launch_bounds__(kSimpleForwardThreads)
    modulated_deform_conv_forward_simple_kernel(ForwardArgs<T> args) {
  using Acc = AccumulateType<T>;
  const ConvGeometry& g = args.geometry;
  const int64_t pixels_per_image = static_cast<int64_t>(g.out_height) * g.out_width;
  const int64_t pixel = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (pixel >= g.batch * pixels_per_image) return;
  const int n = static_cast<int>(pixel / pixels_per_image);
  const int64_t location = pixel - n * pixels_per_image;  // ho * Wo + wo
  const int ho = static_cast<int>(location / g.out_width);
  const int wo = static_cast<int>(location - static_cast<int64_t>(ho) * g.out_width);

  const int out_per_group = g.out_channels / g.groups;
  const int in_per_group = g.in_channels / g.groups;
  const int tiles_per_group = (out_per_group + kOutTile - 1) / kOutTile;
  const int group = blockIdx.y / tiles_per_group;
  const int tile = blockIdx.y - group * tiles_per_group;
  const int out_begin = group * out_per_group + tile * kOutTile;
  const int out_count = min(kOutTile, out_per_group - tile * kOutTile);

  const int taps = g.kernel_h * g.kernel_w;
  const int channels_per_dg = g.in_channels / g.deformable_groups;
  const int64_t plane = static_cast<int64_t>(g.height) * g.width;
  const T* image = args.input + static_cast<int64_t>(n) * g.in_channels * plane;
  const T* offset = args.offset + static_cast<int64_t>(n) * 2 * g.deformable_groups * taps *
                                      pixels_per_image;
  const T* mask =
      args.mask + static_cast<int64_t>(n) * g.deformable_groups * taps * pixels_per_image;

  Acc acc[kOutTile];
#pragma unroll
  for (int t = 0; t < kOutTile; ++t) acc[t] = Acc(0);

  for (int i = 0; i < g.kernel_h; ++i) {
    for (int j = 0; j < g.kernel_w; ++j) {
      const int k = i * g.kernel_w + j;
      int current_dg = -1;
      BilinearPoint<Acc> point;
      Acc modulation = Acc(0);
      for (int c_local = 0; c_local < in_per_group; ++c_local) {
        const int c = group * in_per_group + c_local;
        const int dg = c / channels_per_dg;
        if (dg != current_dg) {
          current_dg = dg;
          const int64_t off_y = (static_cast<int64_t>(dg) * 2 * taps + 2 * k) *
                                pixels_per_image + location;
          const Acc y = Acc(base_y(g, ho, i)) + Convert<T>::to_acc(offset[off_y]);
          const Acc x = Acc(base_x(g, wo, j)) +
                        Convert<T>::to_acc(offset[off_y + pixels_per_image]);
          point = make_bilinear_point<Acc>(y, x, g.height, g.width);
          modulation = Convert<T>::to_acc(
              mask[(static_cast<int64_t>(dg) * taps + k) * pixels_per_image + location]);
        }
        const Acc value = sample_bilinear<T, Acc>(image + c * plane, point) * modulation;
        const T* w = args.weight + (static_cast<int64_t>(out_begin) * in_per_group + c_local) *
                                       taps + k;
#pragma unroll
        for (int t = 0; t < kOutTile; ++t) {
          if (t < out_count) {
            acc[t] += Convert<T>::to_acc(w[static_cast<int64_t>(t) * in_per_group * taps]) *
                      value;
          }
        }
      }
    }
  }

  T* out = args.output + (static_cast<int64_t>(n) * g.out_channels + out_begin) *
                             pixels_per_image + location;
#pragma unroll
  for (int t = 0; t < kOutTile; ++t) {
    if (t < out_count) {
      Acc v = acc[t];
      if (args.bias != nullptr) v += Convert<T>::to_acc(args.bias[out_begin + t]);
      out[static_cast<int64_t>(t) * pixels_per_image] = Convert<T>::from_acc(v);
    }
  }
}

// ---------------------------------------------------------------------------------------
// Kernels for the backward pass (one image at a time; T = float or double: the hosts
// compute half/bfloat16 gradients in float).
//
// columns is [C*K, Ho*Wo] with row c*K + k (K = kh*kw): the modulated samples that, times
// weight viewed as [Cout, C/groups*K], give the output. One thread per
// (deformable group, tap, output pixel) covers every channel of its deformable group.
// ---------------------------------------------------------------------------------------

constexpr int kColumnThreads = 256;

template <typename T>
__global__ void __launch_bounds__(kColumnThreads)
    modulated_deform_im2col_kernel(const T* input, const T* offset, const T* mask,
                                   ConvGeometry g, T* columns) {
  const int taps = g.kernel_h * g.kernel_w;
  const int64_t length = static_cast<int64_t>(g.out_height) * g.out_width;
  const int64_t index = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (index >= g.deformable_groups * taps * length) return;
  const TapPosition pos = decode_tap_position(index, g);
  const BilinearPoint<T> point = tap_point<T>(pos, offset, g);
  const T modulation = mask[pos.mask_index];

  const int channels_per_dg = g.in_channels / g.deformable_groups;
  const int64_t plane = static_cast<int64_t>(g.height) * g.width;
  for (int c = pos.dg * channels_per_dg; c < (pos.dg + 1) * channels_per_dg; ++c) {
    columns[(static_cast<int64_t>(c) * taps + pos.k) * length + pos.location] =
        sample_bilinear<T, T>(input + c * plane, point) * modulation;
  }
}

// From grad_columns (= weight^T x grad_output, same layout as columns) to the gradients of
// input (scattered with atomicAdd: neighbouring taps share pixels), offset and mask
// (written once per thread, no atomics).
template <typename T>
__global__ void __launch_bounds__(kColumnThreads)
    modulated_deform_col2im_kernel(const T* grad_columns, const T* input, const T* offset,
                                   const T* mask, ConvGeometry g, T* grad_input,
                                   T* grad_offset, T* grad_mask) {
  const int taps = g.kernel_h * g.kernel_w;
  const int64_t length = static_cast<int64_t>(g.out_height) * g.out_width;
  const int64_t index = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (index >= g.deformable_groups * taps * length) return;
  const TapPosition pos = decode_tap_position(index, g);
  const BilinearPoint<T> p = tap_point<T>(pos, offset, g);
  const T modulation = mask[pos.mask_index];
  const T ly = p.frac_y, lx = p.frac_x;
  const T hy = T(1) - ly, hx = T(1) - lx;

  T grad_y = T(0), grad_x = T(0), grad_m = T(0);
  const int channels_per_dg = g.in_channels / g.deformable_groups;
  const int64_t plane = static_cast<int64_t>(g.height) * g.width;
  for (int c = pos.dg * channels_per_dg; c < (pos.dg + 1) * channels_per_dg; ++c) {
    const T grad_col =
        grad_columns[(static_cast<int64_t>(c) * taps + pos.k) * length + pos.location];
    T v[4];
    load_corners<T, T>(input + c * plane, p, v);
    grad_m += grad_col * (p.weight[0] * v[0] + p.weight[1] * v[1] + p.weight[2] * v[2] +
                          p.weight[3] * v[3]);
    const T scaled = grad_col * modulation;
    grad_y += scaled * (hx * (v[2] - v[0]) + lx * (v[3] - v[1]));
    grad_x += scaled * (hy * (v[1] - v[0]) + ly * (v[3] - v[2]));
    if (!p.undefined) {
      T* grad_plane = grad_input + c * plane;
#pragma unroll
      for (int corner = 0; corner < 4; ++corner) {
        if (p.valid[corner]) atomicAdd(grad_plane + p.index[corner], scaled * p.weight[corner]);
      }
    }
  }
  if (p.undefined) {
    grad_y = grad_x = grad_m = quiet_nan(T(0));
  }
  grad_offset[pos.offset_y_index] = grad_y;
  grad_offset[pos.offset_y_index + length] = grad_x;
  grad_mask[pos.mask_index] = grad_m;
}

// ---------------------------------------------------------------------------------------
// Host launchers
// ---------------------------------------------------------------------------------------

inline unsigned int blocks_for(int64_t items, int threads) {
  return static_cast<unsigned int>((items + threads - 1) / threads);
}

// Element types the implicit-GEMM kernel may handle; double always takes the simple one.
template <typename T>
constexpr bool igemm_candidate() {
  return !std::is_same<T, double>::value;
}

// Bytes of device scratch launch_forward needs for this geometry and algorithm (0 means
// none: pass nullptr).
template <typename T>
size_t forward_workspace_bytes(const ConvGeometry& geometry,
                               ForwardAlgorithm algo = ForwardAlgorithm::kAuto) {
  if constexpr (igemm_candidate<T>()) {
    if (algo == ForwardAlgorithm::kImplicitGemm ||
        (algo == ForwardAlgorithm::kAuto && igemm_supported<T>(geometry))) {
      return igemm_workspace_bytes<T>(geometry);
    }
  }
  (void)geometry;
  (void)algo;
  return 0;
}
// The same for these arguments: less when the caller provides channels-last input,
// packed weights or split-K counters (ForwardArgs).
template <typename T>
size_t forward_workspace_bytes(const ForwardArgs<T>& args,
                               ForwardAlgorithm algo = ForwardAlgorithm::kAuto) {
  if constexpr (igemm_candidate<T>()) {
    if (algo == ForwardAlgorithm::kImplicitGemm ||
        (algo == ForwardAlgorithm::kAuto && igemm_supported<T>(args.geometry))) {
      return igemm_workspace_bytes<T>(args);
    }
  }
  (void)args;
  (void)algo;
  return 0;
}

template <typename T>
cudaError_t launch_simple_forward(const ForwardArgs<T>& args, cudaStream_t stream) {
  const ConvGeometry& g = args.geometry;
  const int64_t pixels = static_cast<int64_t>(g.batch) * g.out_height * g.out_width;
  if (pixels == 0 || g.out_channels == 0) return cudaSuccess;
  const int out_per_group = g.out_channels / g.groups;
  const int tiles_per_group =
      (out_per_group + kSimpleForwardOutTile - 1) / kSimpleForwardOutTile;
  const dim3 grid(blocks_for(pixels, kSimpleForwardThreads),
                  static_cast<unsigned int>(g.groups * tiles_per_group));
  modulated_deform_conv_forward_simple_kernel<T, kSimpleForwardOutTile>
      <<<grid, kSimpleForwardThreads, 0, stream>>>(args);
  return cudaGetLastError();
}

// Runs the forward pass. workspace must hold forward_workspace_bytes<T>(geometry, algo)
// bytes.
template <typename T>
cudaError_t launch_forward(const ForwardArgs<T>& args, void* workspace, cudaStream_t stream,
                           ForwardAlgorithm algo = ForwardAlgorithm::kAuto) {
  if constexpr (igemm_candidate<T>()) {
    if (algo == ForwardAlgorithm::kImplicitGemm ||
        (algo == ForwardAlgorithm::kAuto && igemm_supported<T>(args.geometry))) {
      return launch_igemm_forward<T>(args, workspace, stream);
    }
  } else {
    if (algo == ForwardAlgorithm::kImplicitGemm) return cudaErrorNotSupported;
  }
  (void)workspace;
  // The simple kernel reads and writes NCHW only and packs nothing.
  if (args.channels_last) return cudaErrorNotSupported;
  return launch_simple_forward<T>(args, stream);
}

// columns [C*K, Ho*Wo] of one image (pointers already offset to that image).
template <typename T>
cudaError_t launch_im2col(const T* input, const T* offset, const T* mask,
                          const ConvGeometry& geometry, T* columns, cudaStream_t stream) {
  const int64_t items = static_cast<int64_t>(geometry.deformable_groups) * geometry.kernel_h *
                        geometry.kernel_w * geometry.out_height * geometry.out_width;
  if (items == 0) return cudaSuccess;
  modulated_deform_im2col_kernel<T><<<blocks_for(items, kColumnThreads), kColumnThreads, 0,
                                      stream>>>(input, offset, mask, geometry, columns);
  return cudaGetLastError();
}

// Gradients of one image. grad_input must be zeroed by the caller (it is accumulated);
// grad_offset and grad_mask are overwritten.
template <typename T>
cudaError_t launch_col2im(const T* grad_columns, const T* input, const T* offset,
                          const T* mask, const ConvGeometry& geometry, T* grad_input,
                          T* grad_offset, T* grad_mask, cudaStream_t stream) {
  const int64_t items = static_cast<int64_t>(geometry.deformable_groups) * geometry.kernel_h *
                        geometry.kernel_w * geometry.out_height * geometry.out_width;
  if (items == 0) return cudaSuccess;
  modulated_deform_col2im_kernel<T><<<blocks_for(items, kColumnThreads), kColumnThreads, 0,
                                      stream>>>(grad_columns, input, offset, mask, geometry,
                                                grad_input, grad_offset, grad_mask);
  return cudaGetLastError();
}

}  // namespace dcn
