// Implicit-GEMM forward of modulated deformable convolution (framework-free).
// Shared by dcn_ext (PyTorch) and trt_plugin (TensorRT); dispatched from
// dcn::launch_forward in modulated_deform_conv.cuh.
//
// The convolution is a GEMM with M = batch*Ho*Wo output pixels, N = Cout and
// K = Cin*kh*kw. Nothing of the K x M column matrix ever reaches device memory: each
// block samples its A tile (BM pixels x one tap x 128 bytes of channels) straight into
// shared memory and multiplies it with a weight tile on the tensor cores (fp16/bf16,
// mma.sync m16n8k16, fp32 accumulation) or with FFMA (fp32: exact, no TF32).
//
// One call runs two kernels:
//  1. prepare: the input NCHW -> NHWC (channels padded with zeros to a multiple of the
//     128-byte chunk) into the workspace, so that eight neighbouring threads fetch one
//     bilinear corner's 128 bytes of channels in one coalesced request; the weights
//     repacked to the GEMM's K order (tap-major, channel-minor); split-K counters zeroed.
//  2. the GEMM: a block first computes, for its BM pixels and the taps of its K slice,
//     the four bilinear weights (mask folded in, fp32) and corner offsets into a shared
//     table (once per pixel, tap and deformable group, reused for every channel chunk);
//     then each K step gathers the corners for the next step into registers while the
//     tensor cores work on the current one. Layers with few pixels and deep K (512->256
//     at 16x16) split K over several blocks; the last block of a tile to finish adds the
//     slices' fp32 partials (kept in the workspace) in a fixed order and runs the epilogue
//     (bias, cast, NCHW store).
#pragma once

#include <cstddef>
#include <cstdint>
#include <cuda_runtime.h>
#include <cuda_fp16.h>
#include <cuda_bf16.h>

#include "dcn_params.h"

namespace dcn {
namespace igemm {

constexpr int kThreads = 128;       // every GEMM block: 4 warps
constexpr int kChunkBytes = 128;    // channels per K step: 128 bytes of one pixel
constexpr int kVectorBytes = 16;    // one thread's share of a bilinear corner
constexpr int kLanesPerPixel = kChunkBytes / kVectorBytes;     // 8
constexpr int kPixelsPerPass = kThreads / kLanesPerPixel;      // 16
constexpr int kTableTaps = 9;       // (tap, group) pairs whose corners a block keeps at once
constexpr int kCoutPadding = 128;   // packed weights are padded to this many output channels
constexpr size_t kAlign = 256;

// Block shapes the dispatcher can pick (M x N). Tensor cores: all four; fp32: 64x64.
enum class Tile : int { k32x64 = 0, k64x64 = 1, k64x128 = 2, k32x128 = 3 };

struct Config {
  Tile tile;
  int split_k;  // number of K slices (1: no split)
};

inline int tile_m(Tile t) { return (t == Tile::k32x64 || t == Tile::k32x128) ? 32 : 64; }
inline int tile_n(Tile t) { return (t == Tile::k64x128 || t == Tile::k32x128) ? 128 : 64; }

inline size_t align_up(size_t v, size_t a) { return (v + a - 1) / a * a; }

// A block's BM output pixels form a (BM/8) x 8 patch of one image, not a strip of one row:
// the deformed samples of neighbouring pixels and taps then land on the same input pixels,
// and the patch's footprint stays in L1 across all taps.
constexpr int kPatchW = 8;

template <typename T>
struct Traits {
  static constexpr int kVec = kVectorBytes / (int)sizeof(T);    // elements per thread load
  static constexpr int kChunk = kChunkBytes / (int)sizeof(T);   // channels per K step
  static constexpr bool kTensorCore = sizeof(T) == 2;
};

// Everything the kernels and the workspace layout derive from the geometry.
struct Shape {
  int batch, height, width, out_h, out_w, cout;
  int taps, kernel_w;
  int stride_h, stride_w, pad_h, pad_w, dil_h, dil_w;
  int dg;             // deformable groups
  int cpg_pad;        // channels per deformable group, padded to the chunk
  int c_pad;          // dg * cpg_pad: channels of the NHWC copy
  int chunks_per_q;   // cpg_pad / chunk; q = g*taps + tap indexes (group, tap) pairs
  int k_steps;        // dg * taps * chunks_per_q
  long long m_total;  // batch * out_h * out_w
  int cout_pad;
};

template <typename T>
inline Shape make_shape(const ConvGeometry& g) {
  Shape s;
  s.batch = g.batch;
  s.height = g.height;
  s.width = g.width;
  s.out_h = g.out_height;
  s.out_w = g.out_width;
  s.cout = g.out_channels;
  s.taps = g.kernel_h * g.kernel_w;
  s.kernel_w = g.kernel_w;
  s.stride_h = g.stride_h;
  s.stride_w = g.stride_w;
  s.pad_h = g.pad_h;
  s.pad_w = g.pad_w;
  s.dil_h = g.dilation_h;
  s.dil_w = g.dilation_w;
  s.dg = g.deformable_groups > 0 ? g.deformable_groups : 1;
  const int chunk = Traits<T>::kChunk;
  const int cpg = g.in_channels / s.dg;
  s.cpg_pad = (cpg + chunk - 1) / chunk * chunk;
  s.c_pad = s.dg * s.cpg_pad;
  s.chunks_per_q = s.cpg_pad / chunk;
  s.k_steps = s.dg * s.taps * s.chunks_per_q;
  s.m_total = (long long)g.batch * g.out_height * g.out_width;
  s.cout_pad = (g.out_channels + kCoutPadding - 1) / kCoutPadding * kCoutPadding;
  return s;
}

// Workspace layout: [NHWC input][packed weights][split-K partials][tile counters].
struct Layout {
  size_t input_offset, weight_offset, partial_offset, counter_offset, total;
  int tiles_m, tiles_n;
};

template <typename T>
inline Layout make_layout(const Shape& s, const Config& c) {
  Layout l;
  const int patch_h = tile_m(c.tile) / kPatchW;
  l.tiles_m = s.batch * ((s.out_h + patch_h - 1) / patch_h) * ((s.out_w + kPatchW - 1) / kPatchW);
  l.tiles_n = (s.cout + tile_n(c.tile) - 1) / tile_n(c.tile);
  size_t off = 0;
  l.input_offset = off;
  // One extra pixel of zeros: corners outside the image point there (no predicated loads).
  off += align_up(((size_t)s.batch * s.height * s.width + 1) * s.c_pad * sizeof(T), kAlign);
  l.weight_offset = off;
  off += align_up((size_t)s.cout_pad * s.k_steps * Traits<T>::kChunk * sizeof(T), kAlign);
  l.partial_offset = off;
  if (c.split_k > 1) {
    off += align_up((size_t)c.split_k * l.tiles_m * l.tiles_n * tile_m(c.tile) * tile_n(c.tile) *
                        sizeof(float), kAlign);
  }
  l.counter_offset = off;
  if (c.split_k > 1) off += align_up((size_t)l.tiles_m * l.tiles_n * sizeof(int), kAlign);
  l.total = off;
  return l;
}

// ---------------------------------------------------------------------------------------
// Element conversions (fp32 arithmetic for every type).
__device__ __forceinline__ void unpack(const uint4& v, float* f, const float*) {
  f[0] = __uint_as_float(v.x);
  f[1] = __uint_as_float(v.y);
  f[2] = __uint_as_float(v.z);
  f[3] = __uint_as_float(v.w);
}
__device__ __forceinline__ void unpack(const uint4& v, float* f, const __half*) {
  const __half2* h = reinterpret_cast<const __half2*>(&v);
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    float2 p = __half22float2(h[i]);
    f[2 * i] = p.x;
    f[2 * i + 1] = p.y;
  }
}
__device__ __forceinline__ void unpack(const uint4& v, float* f, const __nv_bfloat16*) {
  const __nv_bfloat162* h = reinterpret_cast<const __nv_bfloat162*>(&v);
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    float2 p = __bfloat1622float2(h[i]);
    f[2 * i] = p.x;
    f[2 * i + 1] = p.y;
  }
}
__device__ __forceinline__ uint4 pack(const float* f, const __half*) {
  uint4 v;
  __half2* h = reinterpret_cast<__half2*>(&v);
#pragma unroll
  for (int i = 0; i < 4; ++i) h[i] = __floats2half2_rn(f[2 * i], f[2 * i + 1]);
  return v;
}
__device__ __forceinline__ uint4 pack(const float* f, const __nv_bfloat16*) {
  uint4 v;
  __nv_bfloat162* h = reinterpret_cast<__nv_bfloat162*>(&v);
#pragma unroll
  for (int i = 0; i < 4; ++i) h[i] = __floats2bfloat162_rn(f[2 * i], f[2 * i + 1]);
  return v;
}
__device__ __forceinline__ float to_float(float v) { return v; }
__device__ __forceinline__ float to_float(__half v) { return __half2float(v); }
__device__ __forceinline__ float to_float(__nv_bfloat16 v) { return __bfloat162float(v); }
template <typename T>
__device__ __forceinline__ T from_float(float v);
template <>
__device__ __forceinline__ float from_float<float>(float v) { return v; }
template <>
__device__ __forceinline__ __half from_float<__half>(float v) { return __float2half_rn(v); }
template <>
__device__ __forceinline__ __nv_bfloat16 from_float<__nv_bfloat16>(float v) {
  return __float2bfloat16_rn(v);
}

__device__ __forceinline__ void cp_async16(void* smem, const void* gmem) {
  const uint32_t a = (uint32_t)__cvta_generic_to_shared(smem);
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(a), "l"(gmem));
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
__device__ __forceinline__ void cp_async_wait_all() { asm volatile("cp.async.wait_all;\n" ::); }

// Programmatic dependent launch (Hopper): the GEMM kernel is launched while the prepare
// kernel still runs, computes its corner table (which reads only the caller's offsets and
// mask), then waits here for prepare's NHWC copy, packed weights and zeroed counters.
__device__ __forceinline__ void wait_for_prepare() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.wait;\n" ::: "memory");
#endif
}
__device__ __forceinline__ void allow_gemm_launch() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.launch_dependents;\n" ::);
#endif
}

// ---------------------------------------------------------------------------------------
// Kernel 1: NHWC copy of the input, packed weights, zeroed counters.
template <typename T>
struct PrepareParams {
  const T* input;    // [N, C, H, W]
  const T* weight;   // [Cout, C, kh, kw]
  T* input_nhwc;     // [N, H*W, c_pad]
  T* weight_packed;  // tensor cores: [cout_pad][K]; fp32: [K][cout_pad]; K = (q, channel)
  int* counters;
  int counter_count;
  int channels, cpg;  // real channels, real channels per deformable group
  Shape s;
  int transpose_blocks;  // blocks [0, transpose_blocks) transpose, the rest pack weights
  bool vector_loads;     // H*W a multiple of 16 bytes and the input 16-byte aligned
};

// A transpose tile: 128 bytes of channels x 128 bytes of pixels, staged in shared memory
// with rows of 33 words (conflict-light column reads).
template <typename T>
__device__ __forceinline__ void transpose_tile(const PrepareParams<T>& p, int block) {
  constexpr int kTile = kChunkBytes / (int)sizeof(T);
  constexpr int kVec = Traits<T>::kVec;
  constexpr int kRowWords = kTile * (int)sizeof(T) / 4 + 1;
  constexpr int kRow = kRowWords * 4 / (int)sizeof(T);  // elements per staged row
  __shared__ uint32_t words[kTile * kRowWords];
  T* tile = reinterpret_cast<T*>(words);
  const Shape& s = p.s;
  const int hw = s.height * s.width;
  const int pixel_tiles = (hw + kTile - 1) / kTile;
  const int channel_tiles = s.c_pad / kTile;
  const int pt = block % pixel_tiles;
  const int ct = (block / pixel_tiles) % channel_tiles;
  const int n = block / pixel_tiles / channel_tiles;
  const int px0 = pt * kTile;
  if (p.vector_loads) {
    // 16-byte loads along pixels, 16-byte stores along channels.
    for (int v = threadIdx.x; v < kTile * (kTile / kVec); v += 256) {
      const int r = v / (kTile / kVec), col = (v % (kTile / kVec)) * kVec;
      const int cp = ct * kTile + r;
      const int g = s.dg == 1 ? 0 : cp / s.cpg_pad, cl = cp - g * s.cpg_pad;
      uint4 val = make_uint4(0u, 0u, 0u, 0u);
      if (cl < p.cpg && px0 + col < hw)
        val = __ldg(reinterpret_cast<const uint4*>(p.input + (size_t)(n * p.channels + g * p.cpg + cl) * hw + px0 + col));
      uint32_t* dst = words + r * kRowWords + col * (int)sizeof(T) / 4;
      dst[0] = val.x;
      dst[1] = val.y;
      dst[2] = val.z;
      dst[3] = val.w;
    }
    __syncthreads();
    for (int v = threadIdx.x; v < kTile * (kTile / kVec); v += 256) {
      const int cv = v % (kTile / kVec), pl = v / (kTile / kVec);
      if (px0 + pl >= hw) continue;
      uint4 val;
      T* e = reinterpret_cast<T*>(&val);
#pragma unroll
      for (int i = 0; i < kVec; ++i) e[i] = tile[(cv * kVec + i) * kRow + pl];
      *reinterpret_cast<uint4*>(p.input_nhwc + (size_t)(n * hw + px0 + pl) * s.c_pad + ct * kTile + cv * kVec) = val;
    }
    return;
  }
  for (int e = threadIdx.x; e < kTile * kTile; e += 256) {
    const int r = e / kTile, px = px0 + e % kTile;  // r: channel within the tile
    const int cp = ct * kTile + r;
    const int g = s.dg == 1 ? 0 : cp / s.cpg_pad, cl = cp - g * s.cpg_pad;
    T v = from_float<T>(0.f);
    if (cl < p.cpg && px < hw) v = p.input[(size_t)(n * p.channels + g * p.cpg + cl) * hw + px];
    tile[r * kRow + e % kTile] = v;
  }
  __syncthreads();
  for (int e = threadIdx.x; e < kTile * kTile; e += 256) {
    const int r = e / kTile, c = e % kTile;  // r: pixel within the tile
    if (px0 + r < hw) p.input_nhwc[(size_t)(n * hw + px0 + r) * s.c_pad + ct * kTile + c] = tile[c * kRow + r];
  }
}

// Blocks [0, transpose_blocks) transpose the input; then the weight blocks follow. Tensor
// cores: one block per output channel (its row of the original weights is contiguous, so
// the strided reads hit L1); fp32 (k-major): one thread per packed element.
template <typename T>
__global__ void __launch_bounds__(256) prepare_kernel(PrepareParams<T> p) {
  allow_gemm_launch();
  const Shape& s = p.s;
  if ((int)blockIdx.x < p.transpose_blocks) {
    transpose_tile(p, blockIdx.x);
    return;
  }
  // 32-bit index math throughout: launch_with checks that the sizes fit.
  const int block = blockIdx.x - p.transpose_blocks;
  if (block == 0) {
    for (int i = threadIdx.x; i < p.counter_count; i += blockDim.x) p.counters[i] = 0;
    T* zero_pixel = p.input_nhwc + (size_t)s.batch * s.height * s.width * s.c_pad;
    for (int i = threadIdx.x; i < s.c_pad; i += blockDim.x) zero_pixel[i] = from_float<T>(0.f);
  }
  const int k_total = s.k_steps * Traits<T>::kChunk;  // = dg*taps*cpg_pad
  if (Traits<T>::kTensorCore) {
    const int co = block;
    for (int k = threadIdx.x; k < k_total; k += blockDim.x) {
      const int q = k / s.cpg_pad, cl = k - q * s.cpg_pad;
      const int g = s.dg == 1 ? 0 : q / s.taps, tap = q - g * s.taps;
      T v = from_float<T>(0.f);
      if (co < s.cout && cl < p.cpg) v = p.weight[(size_t)(co * p.channels + g * p.cpg + cl) * s.taps + tap];
      p.weight_packed[(size_t)co * k_total + k] = v;
    }
    return;
  }
  const int idx = block * blockDim.x + threadIdx.x;
  if (idx >= k_total * s.cout_pad) return;
  const int k = idx / s.cout_pad, co = idx - k * s.cout_pad;
  const int q = k / s.cpg_pad, cl = k - q * s.cpg_pad;
  const int g = s.dg == 1 ? 0 : q / s.taps, tap = q - g * s.taps;
  T v = from_float<T>(0.f);
  if (co < s.cout && cl < p.cpg) v = p.weight[(size_t)(co * p.channels + g * p.cpg + cl) * s.taps + tap];
  p.weight_packed[idx] = v;
}

// ---------------------------------------------------------------------------------------
// Shared by both GEMM kernels.
template <typename T>
struct GemmParams {
  const T* input_nhwc;
  const T* offset;
  const T* mask;
  const T* weight_packed;
  const T* bias;
  T* output;
  float* partials;
  int* counters;
  Shape s;
  int tiles_m;
  int patches_h, patches_w;  // patches per image column / row
  int split_k;
};

// Output pixel `pl` of pixel tile `tile`: false when it lies outside the image.
template <typename T>
__device__ __forceinline__ bool locate_pixel(const GemmParams<T>& p, int tile, int pl, int bm, int& n_img,
                                             int& pix, int& ho, int& wo) {
  const int per_image = p.patches_h * p.patches_w;
  n_img = tile / per_image;
  const int r = tile - n_img * per_image;
  const int ph = r / p.patches_w, pw = r - ph * p.patches_w;
  ho = ph * (bm / kPatchW) + pl / kPatchW;
  wo = pw * kPatchW + pl % kPatchW;
  pix = ho * p.s.out_w + wo;
  return ho < p.s.out_h && wo < p.s.out_w;
}

// The corner table: for (q, pixel) the four bilinear weights (mask folded in; NaN for a
// NaN coordinate) and the element offsets of the four corners in the NHWC copy (image and
// group included); a corner outside the image points at the zero pixel after the copy.
struct CornerTable {
  float4* weights;  // [kTableTaps][BM]
  int4* where;      // [kTableTaps][BM]
};
constexpr int kTableEntryBytes = 32;

template <typename T>
__device__ __forceinline__ void fill_corner_table(const GemmParams<T>& p, CornerTable t, int bm,
                                                  int tile, int q_lo, int nq) {
  const Shape& s = p.s;
  const int plane = s.out_h * s.out_w;
  for (int e = threadIdx.x; e < nq * bm; e += kThreads) {
    const int qi = e / bm, pl = e - qi * bm;
    float4 w = make_float4(0.f, 0.f, 0.f, 0.f);
    const int zero_pixel = s.batch * s.height * s.width * s.c_pad;
    int4 where = make_int4(zero_pixel, zero_pixel, zero_pixel, zero_pixel);
    int n_img, pix, ho, wo;
    if (locate_pixel(p, tile, pl, bm, n_img, pix, ho, wo)) {
      const int q = q_lo + qi;
      const int g = s.dg == 1 ? 0 : q / s.taps, tap = q - g * s.taps;
      const int i = tap / s.kernel_w, j = tap - i * s.kernel_w;
      const T* off = p.offset + (size_t)(n_img * 2 * s.dg * s.taps + 2 * q) * plane + pix;
      const float dy = to_float(off[0]);
      const float dx = to_float(off[plane]);
      const float mk = to_float(p.mask[(size_t)(n_img * s.dg * s.taps + q) * plane + pix]);
      const float y = (float)(ho * s.stride_h - s.pad_h + i * s.dil_h) + dy;
      const float x = (float)(wo * s.stride_w - s.pad_w + j * s.dil_w) + dx;
      if (isnan(y) || isnan(x)) {
        const float nan = __int_as_float(0x7fc00000);
        w = make_float4(nan, nan, nan, nan);
      } else if (y > -1.f && y < (float)s.height && x > -1.f && x < (float)s.width) {
        const float yf = floorf(y), xf = floorf(x);
        const int y0 = (int)yf, x0 = (int)xf;
        const float ly = y - yf, lx = x - xf, hy = 1.f - ly, hx = 1.f - lx;
        w = make_float4(hy * hx * mk, hy * lx * mk, ly * hx * mk, ly * lx * mk);
        const bool top = y0 >= 0, bottom = y0 + 1 <= s.height - 1;
        const bool left = x0 >= 0, right = x0 + 1 <= s.width - 1;
        const int corner = ((n_img * s.height + y0) * s.width + x0) * s.c_pad + g * s.cpg_pad;
        const int right_step = s.c_pad, down_step = s.width * s.c_pad;
        if (top && left) where.x = corner;
        if (top && right) where.y = corner + right_step;
        if (bottom && left) where.z = corner + down_step;
        if (bottom && right) where.w = corner + down_step + right_step;
      }
    }
    t.weights[qi * bm + pl] = w;
    t.where[qi * bm + pl] = where;
  }
}

// Loads the four corners (16 bytes each) of one thread's share of a pixel's chunk.
template <typename T>
__device__ __forceinline__ void gather4(const T* base, const int4& where, uint4 (&v)[4]) {
  v[0] = __ldg(reinterpret_cast<const uint4*>(base + where.x));
  v[1] = __ldg(reinterpret_cast<const uint4*>(base + where.y));
  v[2] = __ldg(reinterpret_cast<const uint4*>(base + where.z));
  v[3] = __ldg(reinterpret_cast<const uint4*>(base + where.w));
}

template <typename T>
__device__ __forceinline__ void blend(const uint4 (&v)[4], const float4& w, float* r) {
  constexpr int kVec = Traits<T>::kVec;
  float f[4][kVec];
#pragma unroll
  for (int c = 0; c < 4; ++c) unpack(v[c], f[c], (const T*)nullptr);
#pragma unroll
  for (int e = 0; e < kVec; ++e) r[e] = w.x * f[0][e] + w.y * f[1][e] + w.z * f[2][e] + w.w * f[3][e];
}

// Split-K: store this block's accumulators; if it is the tile's last slice to finish,
// sum all slices in a fixed order (repeatable results). Returns whether to run the epilogue.
template <int kAcc>
__device__ __forceinline__ bool split_k_reduce(float (&acc)[kAcc], float* partials, int* counters,
                                               int tile, int split, int split_k, int* flag) {
  float* mine = partials + ((size_t)tile * split_k + split) * kAcc * kThreads;
#pragma unroll
  for (int a = 0; a < kAcc; ++a) __stcg(mine + a * kThreads + threadIdx.x, acc[a]);
  // Release this block's partials / acquire the others' (acq_rel: cheaper than the
  // sequentially consistent __threadfence).
  asm volatile("fence.acq_rel.gpu;\n" ::: "memory");
  __syncthreads();
  if (threadIdx.x == 0) *flag = atomicAdd(counters + tile, 1) == split_k - 1;
  __syncthreads();
  if (!*flag) return false;
  asm volatile("fence.acq_rel.gpu;\n" ::: "memory");
  float sum[kAcc];
#pragma unroll
  for (int a = 0; a < kAcc; ++a) sum[a] = 0.f;
#pragma unroll 4
  for (int s = 0; s < split_k; ++s) {
    const float* slice = partials + ((size_t)tile * split_k + s) * kAcc * kThreads;
#pragma unroll
    for (int a = 0; a < kAcc; ++a) sum[a] += s == split ? acc[a] : __ldcg(slice + a * kThreads + threadIdx.x);
  }
#pragma unroll
  for (int a = 0; a < kAcc; ++a) acc[a] = sum[a];
  if (threadIdx.x == 0) counters[tile] = 0;  // ready for the next launch
  return true;
}

template <int N>
__device__ __forceinline__ void cp_async_wait_pending() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N));
}

// The K loop shared by both kernels. Stage::load<R>(ks, buf) gathers step ks into the
// register set R and starts the weight copy into buffer `buf`; Stage::store<R>(buf, ks)
// blends register set R into A tile `buf`; Stage::compute(buf) multiplies tiles `buf`.
// Stage::kDepth steps of gathers are in flight at once (2: two register sets, three
// shared-memory buffers), so a block waits on memory about once per kDepth steps. The
// corner table is refilled for every kTableTaps (tap, group) pairs of the slice.
template <typename T, typename Stage>
__device__ __forceinline__ void k_loop(const GemmParams<T>& p, Stage& st, CornerTable table, int bm,
                                       int tile, int k_begin, int k_end) {
  constexpr int D = Stage::kDepth, NB = D + 1;
  const int cpq = p.s.chunks_per_q;
  if (k_begin >= k_end) return;
  // (q, chunk) of a step, advanced incrementally (no division per step).
  auto advance = [cpq](int& q, int& chunk) {
    if (++chunk == cpq) {
      chunk = 0;
      ++q;
    }
  };
  const int q_first = k_begin / cpq, q_last = (k_end - 1) / cpq;
  for (int q_lo = q_first; q_lo <= q_last; q_lo += kTableTaps) {
    const int nq = q_last - q_lo + 1 < kTableTaps ? q_last - q_lo + 1 : kTableTaps;
    __syncthreads();  // the previous phase has finished reading the table and the tiles
    fill_corner_table(p, table, bm, tile, q_lo, nq);
    wait_for_prepare();
    __syncthreads();
    st.q_lo = q_lo;
    const int lo = k_begin > q_lo * cpq ? k_begin : q_lo * cpq;
    const int hi = k_end < (q_lo + nq) * cpq ? k_end : (q_lo + nq) * cpq;
    int load_q = lo / cpq, load_chunk = lo - load_q * cpq;  // the next step to gather
    int store_q = load_q, store_chunk = load_chunk;          // the next step to blend
    st.template load<0>(lo, load_q, load_chunk, 0);
    advance(load_q, load_chunk);
    if (D == 2 && lo + 1 < hi) {
      st.template load<D - 1>(lo + 1, load_q, load_chunk, 1);
      advance(load_q, load_chunk);
    }
    st.template store<0>(0, store_q);
    advance(store_q, store_chunk);
    if (D == 2 && lo + 1 < hi) cp_async_wait_pending<1>(); else cp_async_wait_pending<0>();
    __syncthreads();
    for (int ks = lo; ks < hi; ++ks) {
      const int i = ks - lo;
      if (D == 2) {
        if (ks + 2 < hi) {
          if (i & 1) st.template load<D - 1>(ks + 2, load_q, load_chunk, (i + 2) % NB);
          else st.template load<0>(ks + 2, load_q, load_chunk, (i + 2) % NB);
          advance(load_q, load_chunk);
        }
        st.compute(i % NB);
        if (ks + 1 < hi) {
          if (i & 1) st.template store<0>((i + 1) % NB, store_q);
          else st.template store<D - 1>((i + 1) % NB, store_q);
          advance(store_q, store_chunk);
        }
        if (ks + 2 < hi) cp_async_wait_pending<1>(); else cp_async_wait_pending<0>();
      } else {
        if (ks + 1 < hi) st.template load<0>(ks + 1, load_q, load_chunk, (i + 1) & 1);
        st.compute(i & 1);
        if (ks + 1 < hi) {
          st.template store<0>((i + 1) & 1, load_q);
          advance(load_q, load_chunk);
        }
        cp_async_wait_pending<0>();
      }
      __syncthreads();
    }
  }
}

// ---------------------------------------------------------------------------------------
// Kernel 2a: tensor cores (fp16 / bf16).
__device__ __forceinline__ void ldmatrix_x4(uint32_t (&r)[4], const void* smem) {
  const uint32_t a = (uint32_t)__cvta_generic_to_shared(smem);
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(a));
}

template <typename T>
__device__ __forceinline__ void mma16816(float (&d)[4], const uint32_t (&a)[4], const uint32_t* b);
template <>
__device__ __forceinline__ void mma16816<__half>(float (&d)[4], const uint32_t (&a)[4], const uint32_t* b) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
      "{%0,%1,%2,%3};\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}
template <>
__device__ __forceinline__ void mma16816<__nv_bfloat16>(float (&d)[4], const uint32_t (&a)[4],
                                                        const uint32_t* b) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
      "{%0,%1,%2,%3};\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}

template <typename T, int BM, int BN, int WARPS_M>
struct MmaShape {
  static constexpr int kChunk = Traits<T>::kChunk;  // 64 channels (k) per step
  static constexpr int kRow = kChunk + 8;           // padded smem row: 144 bytes, conflict-free
  static constexpr int WARPS_N = 4 / WARPS_M;
  static constexpr int WM = BM / WARPS_M, WN = BN / WARPS_N;
  static constexpr int MT = WM / 16, NT = WN / 8;
  static constexpr int kAcc = MT * NT * 4;
  static constexpr int PPT = BM / kPixelsPerPass;            // pixels gathered per thread
  static constexpr int BPT = BN * kLanesPerPixel / kThreads;  // weight vectors per thread
  static constexpr int kDepth = BM == 32 ? 2 : 1;  // steps of gathers in flight (registers allowing)
  static constexpr int kSmemA = (kDepth + 1) * BM * kRow * (int)sizeof(T);
  static constexpr int kSmemB = (kDepth + 1) * BN * kRow * (int)sizeof(T);
  static constexpr int kSmemTable = kTableTaps * BM * kTableEntryBytes;
  static constexpr int kSmem = kSmemA + kSmemB + kSmemTable;
  static_assert(BN * (BM + 8) * (int)sizeof(T) <= kSmemA + kSmemB, "epilogue staging fits");
  static_assert(MT >= 1 && NT % 2 == 0 && PPT >= 1 && BPT >= 1, "tile");
};

template <typename T, int BM, int BN, int WARPS_M>
struct MmaStage {
  using K = MmaShape<T, BM, BN, WARPS_M>;
  const GemmParams<T>& p;
  T* smem_a;  // [2][BM][kRow]
  T* smem_b;  // [2][BN][kRow]
  CornerTable table;
  int q_lo;
  int lane8, pixel0;  // this thread's 16 bytes within a pixel's chunk; its first pixel
  int warp_m, warp_n, lane, n0;
  size_t k_total;
  static constexpr int kDepth = K::kDepth;
  uint4 vals[K::kDepth][K::PPT][4];
  float acc[K::MT][K::NT][4];

  const T* b_src;  // this thread's first weight vector of step 0
  int b_dst;       // its offset in a B buffer

  template <int R>
  __device__ __forceinline__ void load(int ks, int q, int chunk, int buf) {
    const T* base = p.input_nhwc + chunk * K::kChunk + lane8 * Traits<T>::kVec;
#pragma unroll
    for (int j = 0; j < K::PPT; ++j)
      gather4(base, table.where[(q - q_lo) * BM + pixel0 + j * kPixelsPerPass], vals[R][j]);
    const T* src = b_src + (size_t)ks * K::kChunk;
    T* dst = smem_b + buf * BN * K::kRow + b_dst;
#pragma unroll
    for (int j = 0; j < K::BPT; ++j)  // rows j * (kThreads / kLanesPerPixel) apart
      cp_async16(dst + j * (kThreads / kLanesPerPixel) * K::kRow, src + j * (kThreads / kLanesPerPixel) * k_total);
    cp_async_commit();
  }
  template <int R>
  __device__ __forceinline__ void store(int buf, int q) {
#pragma unroll
    for (int j = 0; j < K::PPT; ++j) {
      const int pl = pixel0 + j * kPixelsPerPass;
      const float4 w = table.weights[(q - q_lo) * BM + pl];
      float r[8];
      blend<T>(vals[R][j], w, r);
      *reinterpret_cast<uint4*>(smem_a + (buf * BM + pl) * K::kRow + lane8 * 8) = pack(r, (const T*)nullptr);
    }
  }
  __device__ __forceinline__ void compute(int buf) {
    const T* a_base = smem_a + (buf * BM + warp_m * K::WM) * K::kRow;
    const T* b_base = smem_b + (buf * BN + warp_n * K::WN) * K::kRow;
#pragma unroll
    for (int kk = 0; kk < K::kChunk; kk += 16) {
      uint32_t af[K::MT][4], bf[K::NT][2];
#pragma unroll
      for (int mt = 0; mt < K::MT; ++mt)
        ldmatrix_x4(af[mt], a_base + (mt * 16 + lane % 16) * K::kRow + kk + (lane / 16) * 8);
#pragma unroll
      for (int nt = 0; nt < K::NT; nt += 2) {
        uint32_t r[4];
        ldmatrix_x4(r, b_base + (nt * 8 + lane % 8 + (lane / 16) * 8) * K::kRow + kk + ((lane / 8) % 2) * 8);
        bf[nt][0] = r[0];
        bf[nt][1] = r[1];
        bf[nt + 1][0] = r[2];
        bf[nt + 1][1] = r[3];
      }
#pragma unroll
      for (int mt = 0; mt < K::MT; ++mt)
#pragma unroll
        for (int nt = 0; nt < K::NT; ++nt) mma16816<T>(acc[mt][nt], af[mt], bf[nt]);
    }
  }
};

// Blocks an SM should hold at once (caps registers so that the gathers of several blocks
// are in flight together).
template <int BM, int BN>
struct MinBlocks {
  static constexpr int value = BN == 128 ? 2 : (BM == 64 ? 3 : 4);
};

template <typename T, int BM, int BN, int WARPS_M>
__global__ void __launch_bounds__(kThreads, MinBlocks<BM, BN>::value) igemm_mma_kernel(GemmParams<T> p) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  using K = MmaShape<T, BM, BN, WARPS_M>;
  extern __shared__ uint4 smem_dyn[];
  __shared__ int last_flag;
  char* smem = reinterpret_cast<char*>(smem_dyn);
  const Shape& s = p.s;
  const int tid = threadIdx.x;
  const int tile_m_idx = blockIdx.x % p.tiles_m, tile_n_idx = blockIdx.x / p.tiles_m;
  const int split = blockIdx.y;

  MmaStage<T, BM, BN, WARPS_M> st{p};
  st.smem_a = reinterpret_cast<T*>(smem);
  st.smem_b = reinterpret_cast<T*>(smem + K::kSmemA);
  st.table.weights = reinterpret_cast<float4*>(smem + K::kSmemA + K::kSmemB);
  st.table.where = reinterpret_cast<int4*>(smem + K::kSmemA + K::kSmemB + kTableTaps * BM * 16);
  st.lane8 = tid % kLanesPerPixel;
  st.pixel0 = tid / kLanesPerPixel;
  st.lane = tid % 32;
  st.warp_m = (tid / 32) % WARPS_M;
  st.warp_n = (tid / 32) / WARPS_M;
  st.n0 = tile_n_idx * BN;
  st.k_total = (size_t)s.k_steps * K::kChunk;
  {
    const int row = tid / kLanesPerPixel, col = (tid % kLanesPerPixel) * Traits<T>::kVec;
    st.b_src = p.weight_packed + (size_t)(st.n0 + row) * st.k_total + col;
    st.b_dst = row * K::kRow + col;
  }
#pragma unroll
  for (int a = 0; a < K::MT; ++a)
#pragma unroll
    for (int b = 0; b < K::NT; ++b)
#pragma unroll
      for (int c = 0; c < 4; ++c) st.acc[a][b][c] = 0.f;

  const int k_begin = (int)((long long)s.k_steps * split / p.split_k);
  const int k_end = (int)((long long)s.k_steps * (split + 1) / p.split_k);
  k_loop<T>(p, st, st.table, BM, tile_m_idx, k_begin, k_end);

  wait_for_prepare();  // also for a slice without K steps
  if (p.split_k > 1) {
    float(&acc_flat)[K::kAcc] = *reinterpret_cast<float(*)[K::kAcc]>(&st.acc[0][0][0]);
    if (!split_k_reduce(acc_flat, p.partials, p.counters, blockIdx.x, split, p.split_k, &last_flag)) return;
  }

  // Epilogue: bias, cast, stage the tile as [n][m] in shared memory, store along pixels.
  T* smem_c = reinterpret_cast<T*>(smem);  // [BN][BM + 8]
  const int n0 = st.n0;
  __syncthreads();
#pragma unroll
  for (int mt = 0; mt < K::MT; ++mt)
#pragma unroll
    for (int nt = 0; nt < K::NT; ++nt)
#pragma unroll
      for (int c = 0; c < 4; ++c) {
        const int row = st.warp_m * K::WM + mt * 16 + st.lane / 4 + (c / 2) * 8;
        const int col = st.warp_n * K::WN + nt * 8 + (st.lane % 4) * 2 + (c % 2);
        float v = st.acc[mt][nt][c];
        if (p.bias != nullptr && n0 + col < s.cout) v += to_float(p.bias[n0 + col]);
        smem_c[col * (BM + 8) + row] = from_float<T>(v);
      }
  __syncthreads();
  // kThreads is a multiple of BM: each thread stores one pixel's channels.
  const int plane = s.out_h * s.out_w;
  const int pl = tid % BM;
  int n_img, pix, ho, wo;
  if (locate_pixel(p, tile_m_idx, pl, BM, n_img, pix, ho, wo)) {
    T* out = p.output + (size_t)n_img * s.cout * plane + pix;
    for (int col = tid / BM; col < BN; col += kThreads / BM) {
      if (n0 + col < s.cout) out[(size_t)(n0 + col) * plane] = smem_c[col * (BM + 8) + pl];
    }
  }
#endif
}

// ---------------------------------------------------------------------------------------
// Kernel 2b: exact fp32 (FFMA). 64 x 64 block, 4 x 8 outputs a thread, A and B k-major.
struct FfmaShape {
  static constexpr int BM = 64, BN = 64;
  static constexpr int kChunk = Traits<float>::kChunk;  // 32 channels per step
  static constexpr int TM = 4, TN = 8;
  static constexpr int THREADS_M = BM / TM;  // 16
  static constexpr int PPT = BM / kPixelsPerPass;
  static constexpr int BPT = kChunk * BN / 4 / kThreads;  // 4
  static constexpr int kRowA = BM + 4, kRowB = BN + 4;
  static constexpr int kAcc = TM * TN;
  static constexpr int kSmemA = 2 * kChunk * kRowA * 4;
  static constexpr int kSmemB = 2 * kChunk * kRowB * 4;
  static constexpr int kSmemTable = kTableTaps * BM * kTableEntryBytes;
  static constexpr int kSmem = kSmemA + kSmemB + kSmemTable;
};

struct FfmaStage {
  using K = FfmaShape;
  const GemmParams<float>& p;
  float* smem_a;  // [2][kChunk][kRowA]
  float* smem_b;  // [2][kChunk][kRowB]
  CornerTable table;
  int q_lo;
  static constexpr int kDepth = 1;
  int lane8, pixel0, tm, tn, n0;
  uint4 vals[K::PPT][4];
  float acc[K::TM][K::TN];

  template <int R>
  __device__ __forceinline__ void load(int ks, int q, int chunk, int buf) {
    const float* base = p.input_nhwc + chunk * K::kChunk + lane8 * 4;
#pragma unroll
    for (int j = 0; j < K::PPT; ++j)
      gather4(base, table.where[(q - q_lo) * K::BM + pixel0 + j * kPixelsPerPass], vals[j]);
#pragma unroll
    for (int j = 0; j < K::BPT; ++j) {
      const int v = threadIdx.x + j * kThreads;
      const int row = v / (K::BN / 4), col = (v % (K::BN / 4)) * 4;
      cp_async16(smem_b + (buf * K::kChunk + row) * K::kRowB + col,
                 p.weight_packed + ((size_t)ks * K::kChunk + row) * p.s.cout_pad + n0 + col);
    }
    cp_async_commit();
  }
  template <int R>
  __device__ __forceinline__ void store(int buf, int q) {
#pragma unroll
    for (int j = 0; j < K::PPT; ++j) {
      const int pl = pixel0 + j * kPixelsPerPass;
      const float4 w = table.weights[(q - q_lo) * K::BM + pl];
      float r[4];
      blend<float>(vals[j], w, r);
#pragma unroll
      for (int e = 0; e < 4; ++e) smem_a[(buf * K::kChunk + lane8 * 4 + e) * K::kRowA + pl] = r[e];
    }
  }
  __device__ __forceinline__ void compute(int buf) {
#pragma unroll 8
    for (int k = 0; k < K::kChunk; ++k) {
      const float4 a = *reinterpret_cast<const float4*>(smem_a + (buf * K::kChunk + k) * K::kRowA + tm * 4);
      const float* brow = smem_b + (buf * K::kChunk + k) * K::kRowB;
      const float4 b0 = *reinterpret_cast<const float4*>(brow + tn * 4);
      const float4 b1 = *reinterpret_cast<const float4*>(brow + K::BN / 2 + tn * 4);
      const float av[4] = {a.x, a.y, a.z, a.w};
      const float bv[8] = {b0.x, b0.y, b0.z, b0.w, b1.x, b1.y, b1.z, b1.w};
#pragma unroll
      for (int i = 0; i < K::TM; ++i)
#pragma unroll
        for (int j = 0; j < K::TN; ++j) acc[i][j] = fmaf(av[i], bv[j], acc[i][j]);
    }
  }
};

__global__ void __launch_bounds__(kThreads, 3) igemm_ffma_kernel(GemmParams<float> p) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  using K = FfmaShape;
  extern __shared__ uint4 smem_dyn[];
  __shared__ int last_flag;
  char* smem = reinterpret_cast<char*>(smem_dyn);
  const Shape& s = p.s;
  const int tid = threadIdx.x;
  const int tile_m_idx = blockIdx.x % p.tiles_m, tile_n_idx = blockIdx.x / p.tiles_m;
  const int split = blockIdx.y;

  FfmaStage st{p};
  st.smem_a = reinterpret_cast<float*>(smem);
  st.smem_b = reinterpret_cast<float*>(smem + K::kSmemA);
  st.table.weights = reinterpret_cast<float4*>(smem + K::kSmemA + K::kSmemB);
  st.table.where = reinterpret_cast<int4*>(smem + K::kSmemA + K::kSmemB + kTableTaps * K::BM * 16);
  st.lane8 = tid % kLanesPerPixel;
  st.pixel0 = tid / kLanesPerPixel;
  st.tm = tid % K::THREADS_M;
  st.tn = tid / K::THREADS_M;
  st.n0 = tile_n_idx * K::BN;
#pragma unroll
  for (int i = 0; i < K::TM; ++i)
#pragma unroll
    for (int j = 0; j < K::TN; ++j) st.acc[i][j] = 0.f;

  const int k_begin = (int)((long long)s.k_steps * split / p.split_k);
  const int k_end = (int)((long long)s.k_steps * (split + 1) / p.split_k);
  k_loop<float>(p, st, st.table, K::BM, tile_m_idx, k_begin, k_end);

  wait_for_prepare();  // also for a slice without K steps
  if (p.split_k > 1) {
    float(&acc_flat)[K::kAcc] = *reinterpret_cast<float(*)[K::kAcc]>(&st.acc[0][0]);
    if (!split_k_reduce(acc_flat, p.partials, p.counters, blockIdx.x, split, p.split_k, &last_flag)) return;
  }
  const int plane = s.out_h * s.out_w;
#pragma unroll
  for (int i = 0; i < K::TM; ++i) {
    int n_img, pix, ho, wo;
    if (!locate_pixel(p, tile_m_idx, st.tm * 4 + i, K::BM, n_img, pix, ho, wo)) continue;
    float* out = p.output + (size_t)n_img * s.cout * plane + pix;
#pragma unroll
    for (int j = 0; j < K::TN; ++j) {
      const int co = st.n0 + st.tn * 4 + (j % 4) + (j / 4) * (K::BN / 2);
      if (co < s.cout) out[(size_t)co * plane] = st.acc[i][j] + (p.bias != nullptr ? p.bias[co] : 0.f);
    }
  }
#endif
}

// ---------------------------------------------------------------------------------------
// Host side.
inline int device_sm_count() {
  int dev = 0, sms = 132;
  if (cudaGetDevice(&dev) == cudaSuccess) cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev);
  return sms > 0 ? sms : 132;
}

template <typename T>
inline bool valid_config(const Shape& s, const Config& c) {
  if (c.split_k < 1 || c.split_k > s.k_steps) return false;
  if (!Traits<T>::kTensorCore) return c.tile == Tile::k64x64;
  return true;
}

inline long long tile_count(const Shape& s, Tile t) {
  const int patch_h = tile_m(t) / kPatchW;
  const long long tiles_m = (long long)s.batch * ((s.out_h + patch_h - 1) / patch_h) *
                            ((s.out_w + kPatchW - 1) / kPatchW);
  return tiles_m * ((s.cout + tile_n(t) - 1) / tile_n(t));
}

// Picks the block shape and the split of K from the layer's GEMM size (rules fitted to
// sweeps of every block shape and split over the CenterNet layers on an H100, see
// bench/NOTES.md): N tiles of 128 when there are at least 128 output channels (each
// gathered A tile then feeds twice the MMAs); 64-pixel tiles when they alone give most
// SMs a block, else 32-pixel tiles; K split until about two (128-wide tiles) or three
// (64-wide) blocks per SM exist, in slices of at least kMinSteps steps; a 128-wide tile
// that would need more than 8 slices takes 64-wide tiles instead. fp32 (64x64 only):
// K split to at most three blocks per SM, rounded down, at most 16 slices.
template <typename T>
inline Config choose_config(const Shape& s, int sms) {
  constexpr int kMinSteps = 3;
  const long long max_split = s.k_steps / kMinSteps > 1 ? s.k_steps / kMinSteps : 1;
  auto clamp_split = [&](long long split) { return (int)(split > max_split ? max_split : (split < 1 ? 1 : split)); };
  auto rounded = [&](long long tiles) { return (3LL * sms + tiles / 2) / tiles; };
  if (!Traits<T>::kTensorCore) {  // fp32: whole blocks per SM only, at most 16 slices
    const long long split = 3LL * sms / tile_count(s, Tile::k64x64);
    return Config{Tile::k64x64, clamp_split(split > 16 ? 16 : split)};
  }
  const bool wide = s.cout >= 128;
  const Tile big = wide ? Tile::k64x128 : Tile::k64x64;
  const long long big_tiles = tile_count(s, big);
  if (big_tiles * 4 >= 3LL * sms) {
    if (wide) return Config{big, clamp_split(2LL * sms / big_tiles)};
    return Config{big, s.k_steps < 2 * 9 ? 1 : clamp_split(rounded(big_tiles))};
  }
  if (wide) {
    const long long tiles = tile_count(s, Tile::k32x128);
    if (2LL * sms / tiles <= 8) return Config{Tile::k32x128, clamp_split(2LL * sms / tiles)};
  }
  return Config{Tile::k32x64, clamp_split(rounded(tile_count(s, Tile::k32x64)))};
}

template <typename T>
inline bool shape_supported(const ConvGeometry& g) {
  if (g.batch < 1 || g.in_channels < 1 || g.out_channels < 1 || g.height < 1 || g.width < 1) return false;
  if (g.out_height < 1 || g.out_width < 1 || g.kernel_h < 1 || g.kernel_w < 1) return false;
  if (g.stride_h < 1 || g.stride_w < 1 || g.dilation_h < 1 || g.dilation_w < 1) return false;
  if (g.groups != 1) return false;  // grouped convolution stays on the simple kernel
  const int dg = g.deformable_groups;
  if (dg < 1 || g.in_channels % dg != 0) return false;
  // Several deformable groups: one K step must not straddle two groups.
  if (dg > 1 && (g.in_channels / dg) % Traits<T>::kChunk != 0) return false;
  const Shape s = make_shape<T>(g);
  // 32-bit index math: element offsets into the NHWC copy (all images), pixel indices
  // (plus a tile), offset/mask channel indices and packed-weight indices.
  constexpr long long kLimit = (1LL << 31) - 1024;
  if ((long long)s.batch * s.height * s.width * s.c_pad >= kLimit) return false;
  if (s.m_total >= kLimit) return false;
  if ((long long)s.batch * 3 * s.dg * s.taps >= kLimit) return false;
  if ((long long)s.batch * g.in_channels >= kLimit) return false;
  if ((long long)s.k_steps * Traits<T>::kChunk * s.cout_pad >= kLimit) return false;
  if ((long long)g.out_channels * g.in_channels * s.taps >= kLimit) return false;
  return true;
}

template <typename T>
inline size_t workspace_bytes_for(const ConvGeometry& g, const Config& c) {
  return make_layout<T>(make_shape<T>(g), c).total;
}

template <typename T, typename KernelFn>
inline cudaError_t launch_dynamic(KernelFn kernel, dim3 grid, int smem, cudaStream_t stream,
                                  const GemmParams<T>& gp) {
  cudaError_t err = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, smem);
  if (err != cudaSuccess) return err;
  int dev = 0, major = 0;
  if (cudaGetDevice(&dev) == cudaSuccess) cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev);
  cudaLaunchConfig_t config = {};
  config.gridDim = grid;
  config.blockDim = dim3(kThreads);
  config.dynamicSmemBytes = (size_t)smem;
  config.stream = stream;
  cudaLaunchAttribute overlap[1];
  overlap[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
  overlap[0].val.programmaticStreamSerializationAllowed = 1;
  config.attrs = overlap;
  config.numAttrs = major >= 9 ? 1 : 0;  // griddepcontrol exists from Hopper on
  return cudaLaunchKernelEx(&config, kernel, gp);
}

template <typename T>
inline cudaError_t launch_with(const ForwardArgs<T>& args, void* workspace, cudaStream_t stream,
                               const Config& config) {
  const ConvGeometry& g = args.geometry;
  if (!shape_supported<T>(g)) return cudaErrorNotSupported;
  const Shape s = make_shape<T>(g);
  if (!valid_config<T>(s, config)) return cudaErrorInvalidValue;
  if (workspace == nullptr) return cudaErrorInvalidValue;
  const Layout l = make_layout<T>(s, config);
  char* ws = static_cast<char*>(workspace);
  T* input_nhwc = reinterpret_cast<T*>(ws + l.input_offset);
  T* weight_packed = reinterpret_cast<T*>(ws + l.weight_offset);
  float* partials = reinterpret_cast<float*>(ws + l.partial_offset);
  int* counters = reinterpret_cast<int*>(ws + l.counter_offset);
  const int tiles = l.tiles_m * l.tiles_n;

  PrepareParams<T> pp;
  pp.input = args.input;
  pp.weight = args.weight;
  pp.input_nhwc = input_nhwc;
  pp.weight_packed = weight_packed;
  pp.counters = counters;
  pp.counter_count = config.split_k > 1 ? tiles : 0;
  pp.channels = g.in_channels;
  pp.cpg = g.in_channels / s.dg;
  pp.s = s;
  pp.vector_loads = (g.height * g.width) % Traits<T>::kVec == 0 &&
                    reinterpret_cast<uintptr_t>(args.input) % kVectorBytes == 0;
  constexpr int kTile = kChunkBytes / (int)sizeof(T);
  const long long pixel_tiles = ((long long)s.height * s.width + kTile - 1) / kTile;
  const long long transpose_blocks = pixel_tiles * (s.c_pad / kTile) * s.batch;
  const long long pack_blocks = Traits<T>::kTensorCore
                                    ? (long long)s.cout_pad
                                    : ((long long)s.k_steps * Traits<T>::kChunk * s.cout_pad + 255) / 256;
  if (transpose_blocks + pack_blocks >= (1LL << 31)) return cudaErrorNotSupported;
  pp.transpose_blocks = (int)transpose_blocks;
  prepare_kernel<T><<<(unsigned)(transpose_blocks + pack_blocks), 256, 0, stream>>>(pp);
  cudaError_t err = cudaGetLastError();
  if (err != cudaSuccess) return err;

  GemmParams<T> gp;
  gp.input_nhwc = input_nhwc;
  gp.offset = args.offset;
  gp.mask = args.mask;
  gp.weight_packed = weight_packed;
  gp.bias = args.bias;
  gp.output = args.output;
  gp.partials = partials;
  gp.counters = counters;
  gp.s = s;
  gp.tiles_m = l.tiles_m;
  gp.patches_h = (s.out_h + tile_m(config.tile) / kPatchW - 1) / (tile_m(config.tile) / kPatchW);
  gp.patches_w = (s.out_w + kPatchW - 1) / kPatchW;
  gp.split_k = config.split_k;
  const dim3 grid((unsigned)tiles, (unsigned)config.split_k);
  if constexpr (Traits<T>::kTensorCore) {
    switch (config.tile) {
      case Tile::k32x64:
        return launch_dynamic<T>(igemm_mma_kernel<T, 32, 64, 2>, grid, MmaShape<T, 32, 64, 2>::kSmem, stream, gp);
      case Tile::k64x64:
        return launch_dynamic<T>(igemm_mma_kernel<T, 64, 64, 2>, grid, MmaShape<T, 64, 64, 2>::kSmem, stream, gp);
      case Tile::k64x128:
        return launch_dynamic<T>(igemm_mma_kernel<T, 64, 128, 2>, grid, MmaShape<T, 64, 128, 2>::kSmem, stream, gp);
      case Tile::k32x128:
        return launch_dynamic<T>(igemm_mma_kernel<T, 32, 128, 2>, grid, MmaShape<T, 32, 128, 2>::kSmem, stream, gp);
    }
    return cudaErrorInvalidValue;
  } else {
    return launch_dynamic<T>(igemm_ffma_kernel, grid, FfmaShape::kSmem, stream, gp);
  }
}

}  // namespace igemm

// True when launch_igemm_forward handles this geometry for element type T (groups == 1;
// several deformable groups only when each holds a multiple of 64 (fp16/bf16) or 32
// (fp32) channels; compute capability 8.0 or newer).
template <typename T>
bool igemm_supported(const ConvGeometry& geometry) {
  if (!igemm::shape_supported<T>(geometry)) return false;
  int dev = 0, major = 0;
  if (cudaGetDevice(&dev) != cudaSuccess) return false;
  if (cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev) != cudaSuccess) return false;
  return major >= 8;
}

// Bytes of device scratch launch_igemm_forward needs on the current device (the NHWC
// copy of the input, the packed weights and, for split-K layers, fp32 partials).
template <typename T>
size_t igemm_workspace_bytes(const ConvGeometry& geometry) {
  if (!igemm::shape_supported<T>(geometry)) return 0;
  const igemm::Shape s = igemm::make_shape<T>(geometry);
  return igemm::workspace_bytes_for<T>(geometry, igemm::choose_config<T>(s, igemm::device_sm_count()));
}

// Runs the forward on `stream`. `workspace` must hold igemm_workspace_bytes<T>(geometry)
// bytes, 256-byte aligned, and must not be used by another launch running concurrently.
template <typename T>
cudaError_t launch_igemm_forward(const ForwardArgs<T>& args, void* workspace, cudaStream_t stream) {
  if (!igemm::shape_supported<T>(args.geometry)) return cudaErrorNotSupported;
  const igemm::Shape s = igemm::make_shape<T>(args.geometry);
  return igemm::launch_with<T>(args, workspace, stream, igemm::choose_config<T>(s, igemm::device_sm_count()));
}

}  // namespace dcn
