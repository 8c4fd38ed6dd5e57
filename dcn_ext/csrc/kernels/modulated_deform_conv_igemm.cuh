// Implicit-GEMM forward of modulated deformable convolution (framework-free).
// Shared by dcn_ext (PyTorch) and trt_plugin (TensorRT); dispatched from
// dcn::launch_forward in modulated_deform_conv.cuh.
//
// The convolution is a GEMM with M = batch*Ho*Wo output pixels, N = Cout and
// K = Cin*kh*kw. Nothing of the K x M column matrix ever reaches device memory: each
// block samples its A tile (BM pixels x one tap x 128 bytes of channels) straight into
// shared memory and multiplies it with a weight tile on the tensor cores with fp32
// accumulation: fp16/bf16 with mma.sync m16n8k16, or on sm_90a builds with Hopper's
// wgmma (same bits); fp32 as 3xTF32 (mma.sync m16n8k8, or wgmma k8 on sm_90a builds; each
// fp32 operand split into two TF32 parts, three products: fp32-level accuracy, not TF32's).
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
//     (bias, cast, NCHW or channels-last store). On sm_90a builds one image's 3x3 layers
//     take warp-specialised blocks (kernel 2c): one warpgroup multiplies while three
//     others gather and blend later K steps into a ring of shared-memory stages; their
//     split-K slices, launched cooperatively, share the reduction (each sums a band of
//     the tile's rows over all slices, in the same order). A channels-last input is read
//     in place (no copy) and packed weights may come from the caller (dcn_ext keeps
//     them), so the prepare kernel may be left out altogether. 64-channel 3x3 layers
//     with at least one wave of 128-pixel tiles take kernel 2d on sm_90a builds (16-bit types):
//     each thread blends its corners straight into wgmma's register A operand, the
//     weights' pre-swizzled image (packed with the weights, in the K order of that
//     operand, so its sums differ from the other kernels' in the last bits) arrives by
//     bulk copies, and no block-wide barrier runs in the K loop.
#pragma once

#include <cstddef>
#include <cstdint>
#include <type_traits>
#include <cuda_runtime.h>
#include <cuda_fp16.h>
#include <cuda_bf16.h>

#include "dcn_params.h"

// Development builds only (bench/igemm_breakdown.py): 1 returns at kernel entry, 2 skips
// the K loop (no table, no gathers), 3 fills the corner tables but skips the K steps. The
// differences between them split a layer's time into launch, prologue, K loop and epilogue.
#ifndef DCN_IGEMM_PROBE
#define DCN_IGEMM_PROBE 0
#endif
// Development builds only (bench/NOTES.md v23b), wrong results: the register-A kernel runs
// only its first DCN_RA_PROBE_STEPS K steps of nine, and gathers only the first
// DCN_RA_PROBE_CORNERS of each sample's four corners (the others reuse their registers).
// DCN_RA_MMA_SYNC=1 (v39, right results, slower): each warp multiplies its own rows with
// mma.sync instead of its warpgroup's wgmma. DCN_RA_PROBE_COALESCED=1 (v39b, wrong results):
// the gathers read whole lines, the bound of any fix to the fragment layout's half-line loads.
#ifndef DCN_RA_PROBE_STEPS
#define DCN_RA_PROBE_STEPS 9
#endif
#ifndef DCN_RA_MMA_SYNC
#define DCN_RA_MMA_SYNC 0
#endif
#ifndef DCN_RA_PROBE_COALESCED
#define DCN_RA_PROBE_COALESCED 0
#endif
#ifndef DCN_RA_PROBE_CORNERS
#define DCN_RA_PROBE_CORNERS 4
#endif

namespace dcn {
namespace igemm {

constexpr int kChunkBytes = 128;    // channels per K step: 128 bytes of one pixel
constexpr int kVectorBytes = 16;    // one thread's share of a bilinear corner
constexpr int kLanesPerPixel = kChunkBytes / kVectorBytes;     // 8
constexpr int kTableTaps = 9;       // (tap, group) pairs whose corners a block keeps at once
constexpr int kCoutPadding = 128;   // packed weights are padded to this many output channels
constexpr size_t kAlign = 256;

// Block shapes the dispatcher can pick (M x N, and 4 or 8 warps; the automatic choice
// takes 8-warp ones, the others stay for sweeps). The 8-warp shapes give each scheduler twice the warps to hide
// the gathers' latency behind (the sampling loop is latency bound, see bench/NOTES.md).
// The "wg" shapes run on Hopper's warpgroup MMA (builds for sm_90a only).
enum class Tile : int {
  k32x64 = 0, k64x64 = 1, k64x128 = 2, k32x128 = 3,
  k32x64w8 = 4, k64x64w8 = 5, k64x128w8 = 6, k128x64w8 = 7, k128x128w8 = 8,
  k64x64wg = 9, k128x64wg = 10, k64x128wg = 11, k128x128wg = 12, k64x256wg = 13,
  k64x64ws = 14, k64x128ws = 15, k128x64ra = 16, k32x64ws = 17, k32x128ws = 18, k128x64ws = 19,
  k64x256ws = 20, k32x256ws = 21,
};
constexpr int kTileCount = 22;
inline bool is_wgmma_tile(Tile t) { return (int)t >= (int)Tile::k64x64wg; }
// The warp-specialised wgmma tiles: one corner-table fill per block.
inline bool is_ws_tile(Tile t) {
  return t == Tile::k64x64ws || t == Tile::k64x128ws || t == Tile::k32x64ws || t == Tile::k32x128ws ||
         t == Tile::k128x64ws || t == Tile::k64x256ws || t == Tile::k32x256ws;
}
// The register-A wgmma tile (kernel 2d): 64-channel 3x3 layers, 16-bit types, no split.
inline bool is_ra_tile(Tile t) { return t == Tile::k128x64ra; }

struct Config {
  Tile tile;
  int split_k;  // number of K slices (1: no split)
  // Warp-specialised tiles with split-K: the tile's slices, launched cooperatively (all
  // resident at once), share the reduction and the epilogue. false: the last slice to
  // finish sums them all, as the other kernels do (the launcher also falls back to that
  // when the grid cannot be resident at once).
  bool shared_reduction = true;
};

struct TileShape {
  int m, n, threads;
};
inline TileShape tile_shape(Tile t) {
  constexpr TileShape kShapes[kTileCount] = {{32, 64, 128},  {64, 64, 128},  {64, 128, 128},
                                             {32, 128, 128}, {32, 64, 256},  {64, 64, 256},
                                             {64, 128, 256}, {128, 64, 256}, {128, 128, 256},
                                             {64, 64, 256},  {128, 64, 256}, {64, 128, 256},
                                             {128, 128, 256}, {64, 256, 256}, {64, 64, 512},
                                             {64, 128, 512}, {128, 64, 256}, {32, 64, 512},
                                             {32, 128, 512}, {128, 64, 384}, {64, 256, 384},
                                             {32, 256, 384}};
  return kShapes[(int)t];
}
inline int tile_m(Tile t) { return tile_shape(t).m; }
inline int tile_n(Tile t) { return tile_shape(t).n; }
inline int tile_threads(Tile t) { return tile_shape(t).threads; }

inline size_t align_up(size_t v, size_t a) { return (v + a - 1) / a * a; }

// A block's BM output pixels form a (BM/8) x 8 patch of one image, not a strip of one row:
// the deformed samples of neighbouring pixels and taps then land on the same input pixels,
// and the patch's footprint stays in L1 across all taps.
constexpr int kPatchW = 8;

// Division by a divisor fixed for a launch, as a multiply-high and a shift (the round-up
// method of Granlund and Montgomery, as CUTLASS's FastDivmod): exact for 0 <= n < 2^31 and
// 1 <= d < 2^31. The kernels' per-thread index math (a tile's image and patch, a K step's
// tap and chunk) had about ten integer divisions per thread at about 20 instructions each
// (ncu, bench/NOTES.md v18); this is two or three.
struct FastDiv {
  int d = 1;
  uint32_t mul = 0, shift = 0;
  FastDiv() = default;
  explicit FastDiv(int divisor) : d(divisor) {
    if (divisor > 1) {
      int log2_ceil = 0;
      while ((1LL << log2_ceil) < divisor) ++log2_ceil;
      const int p = 31 + log2_ceil;
      mul = (uint32_t)(((1ULL << p) + (uint64_t)divisor - 1) / (uint64_t)divisor);
      shift = (uint32_t)(p - 32);
    }
  }
  __host__ __device__ __forceinline__ int div(int n) const {
    if (d == 1) return n;
#if defined(__CUDA_ARCH__)
    return (int)(__umulhi((uint32_t)n, mul) >> shift);
#else
    return (int)((uint32_t)(((uint64_t)(uint32_t)n * mul) >> 32) >> shift);
#endif
  }
};

template <typename T>
struct Traits {
  static constexpr int kVec = kVectorBytes / (int)sizeof(T);    // elements per thread load
  static constexpr int kChunk = kChunkBytes / (int)sizeof(T);   // channels per K step
  // Every type runs on the tensor cores: fp16/bf16 directly, fp32 as 3xTF32 (each fp32
  // operand split into a TF32 "big" part and a TF32 "small" remainder; big*big + big*small
  // + small*big in fp32 accumulation keeps fp32-level accuracy, unlike plain TF32).
  static constexpr bool kTf32x3 = sizeof(T) == 4;
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
  bool channels_last;      // input read and output written NHWC, no NHWC copy
  bool weights_resident;   // the caller passes packed weights (no packing per call)
  bool counters_resident;  // the caller passes split-K counters that are zero at rest
  // The packed weights also hold the register-A kernel's image (kernel 2d): 16-bit types
  // on sm_90a builds, one deformable group of 64 (padded) channels, 3x3 kernel.
  bool ra_image;
  // ... and the warp-specialised kernels' B image (kernel 2c, ws_image_index): sm_90a
  // builds, shapes whose corner table fits one fill (dg * taps <= kTableTaps).
  bool ws_image;
};

// The register-A kernel (kernel 2d) multiplies 64 channels a tap with the A operand in
// registers; wgmma then reads K position k of a thread's fragment (k = 16 j + 8 h + 2 t
// + e, t = lane % 4) where the thread's sixteen channels 16 t .. 16 t + 15 of the pixel
// sit in the order f = 4 j + 2 h + e, so that two 16-byte loads per corner fill them.
// The weights are packed in the same order: K position k of a tap holds channel ra_channel(k).
__host__ __device__ constexpr int ra_channel(int k) {
  return 16 * ((k / 2) % 4) + 4 * (k / 16) + 2 * ((k / 8) % 2) + k % 2;
}

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
  s.channels_last = false;
  s.weights_resident = false;
  s.counters_resident = false;
#if defined(DCN_IGEMM_WGMMA)
  s.ra_image = !Traits<T>::kTf32x3 && s.dg == 1 && s.taps == 9 && s.kernel_w == 3 && s.c_pad == Traits<T>::kChunk;
  s.ws_image = s.dg * s.taps <= kTableTaps;
#else
  s.ra_image = false;
  s.ws_image = false;
#endif
  return s;
}

// The packed weights' [cout_pad][K] rows (fp32: big parts, then small parts).
template <typename T>
__host__ __device__ inline size_t packed_row_elements(const Shape& s) {
  return (Traits<T>::kTf32x3 ? 2 : 1) * (size_t)s.cout_pad * s.k_steps * Traits<T>::kChunk;
}
// Where the B image starts: after the rows and the register-A image, if any.
template <typename T>
__host__ __device__ inline size_t ws_image_start(const Shape& s) {
  return packed_row_elements<T>(s) + (s.ra_image ? (size_t)s.cout_pad * s.taps * Traits<T>::kChunk : 0);
}
// Elements of the packed weights: the rows, then the register-A image where the shape has
// one ([cout_pad / 64][9 taps][64 rows][64]), then the warp-specialised kernels' B image
// where it has one (the rows again, in ws_image_index's order).
template <typename T>
inline size_t packed_weight_elements(const Shape& s) {
  return ws_image_start<T>(s) + (s.ws_image ? packed_row_elements<T>(s) : 0);
}

// The warp-specialised kernels' B image: for each part (fp32: big, small), 64 output
// channels and packed K step (group and tap, then channel chunk), the 64 x 128-byte tile
// as wgmma reads it from shared memory (16-byte chunk j of row r at j ^ (r % 8)), so
// that a producer brings a step's weights with one bulk copy per 64 outputs instead of
// every thread copying 16-byte pieces (fifteenth session, bench/NOTES.md v28).
// Element index of channel c (within the chunk) of packed step ps, output channel co.
template <typename T>
__host__ __device__ inline size_t ws_image_index(const Shape& s, int part, int co, int ps, int c) {
  constexpr int kChunk = Traits<T>::kChunk, kVec = Traits<T>::kVec;
  const size_t tile = ((size_t)part * (s.cout_pad / 64) + co / 64) * s.k_steps + ps;
  return ws_image_start<T>(s) + (tile * 64 + co % 64) * kChunk + (size_t)(((c / kVec) ^ (co % 8)) * kVec + c % kVec);
}

template <typename T>
inline Shape make_shape(const ForwardArgs<T>& a) {
  Shape s = make_shape<T>(a.geometry);
  s.channels_last = a.channels_last;
  s.weights_resident = a.weight_packed != nullptr;
  s.counters_resident = a.split_k_counters != nullptr;
  return s;
}

// Corners outside the image read this block of zeros instead of the input (no predicated
// loads, exact zeros even next to inf/NaN inputs). Zero-initialised at module load and
// never written; bounds the channels of one deformable group (shape_supported).
constexpr int kZeroPixelBytes = 16384;
static __device__ uint4 g_zero_pixel[kZeroPixelBytes / 16];

// Workspace layout: [NHWC input][packed weights][split-K partials][tile counters]; the
// parts the caller provides (channels-last input, resident weights or counters) take no
// room.
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
  if (!s.channels_last) off += align_up((size_t)s.batch * s.height * s.width * s.c_pad * sizeof(T), kAlign);
  l.weight_offset = off;
  if (!s.weights_resident) off += align_up(packed_weight_elements<T>(s) * sizeof(T), kAlign);
  l.partial_offset = off;
  if (c.split_k > 1) {
    off += align_up((size_t)c.split_k * l.tiles_m * l.tiles_n * tile_m(c.tile) * tile_n(c.tile) *
                        sizeof(float), kAlign);
  }
  l.counter_offset = off;
  if (c.split_k > 1 && !s.counters_resident) off += align_up((size_t)l.tiles_m * l.tiles_n * sizeof(int), kAlign);
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
__device__ __forceinline__ uint4 pack(const float* f, const float*) {
  return make_uint4(__float_as_uint(f[0]), __float_as_uint(f[1]), __float_as_uint(f[2]), __float_as_uint(f[3]));
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

// Round to TF32 (10 mantissa bits, round to nearest away), kept in an fp32 register.
__device__ __forceinline__ float tf32_round(float x) {
  uint32_t r;
  asm("cvt.rna.tf32.f32 %0, %1;\n" : "=r"(r) : "f"(x));
  return __uint_as_float(r);
}
template <typename T>
__device__ __forceinline__ T tf32_round(T x) { return x; }
// An fp32 value (as its bits) split into TF32 big + small parts (3xTF32).
__device__ __forceinline__ void split_tf32(uint32_t bits, uint32_t& big, uint32_t& small) {
  const float v = __uint_as_float(bits), b = tf32_round(v);
  big = __float_as_uint(b);
  small = __float_as_uint(tf32_round(v - b));
}
// Four fp32 values stored to the A tile at `big`, their TF32 small parts `small_offset`
// bytes further on (the second A tile of 3xTF32).
__device__ __forceinline__ void store_split_tf32(const uint4& v, char* big, int small_offset) {
  uint4 b, s;
  split_tf32(v.x, b.x, s.x);
  split_tf32(v.y, b.y, s.y);
  split_tf32(v.z, b.z, s.z);
  split_tf32(v.w, b.w, s.w);
  *reinterpret_cast<uint4*>(big) = b;
  *reinterpret_cast<uint4*>(big + small_offset) = s;
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
  T* weight_packed;  // [cout_pad][K], K = (q, channel); fp32: [2][cout_pad][K] (big, small)
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

// Blocks [0, transpose_blocks) transpose the input; then the weight blocks follow, one per
// output channel.
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
  }
  if (s.weights_resident) return;  // this block only zeroed the counters
  const int k_total = s.k_steps * Traits<T>::kChunk;  // = dg*taps*cpg_pad
  // One block per output channel: its row of the original weights is contiguous, so the
  // strided reads hit L1.
  {
    const int co = block;
    for (int k = threadIdx.x; k < k_total; k += blockDim.x) {
      const int q = k / s.cpg_pad, cl = k - q * s.cpg_pad;
      const int g = s.dg == 1 ? 0 : q / s.taps, tap = q - g * s.taps;
      T v = from_float<T>(0.f);
      if (co < s.cout && cl < p.cpg) v = p.weight[(size_t)(co * p.channels + g * p.cpg + cl) * s.taps + tap];
      const int ps = k / Traits<T>::kChunk, c = k - ps * Traits<T>::kChunk;
      if constexpr (Traits<T>::kTf32x3) {  // big parts, then the small parts cout_pad rows on
        const float big = tf32_round(v), small = tf32_round(v - big);
        p.weight_packed[(size_t)co * k_total + k] = big;
        p.weight_packed[((size_t)s.cout_pad + co) * k_total + k] = small;
        if (s.ws_image) {
          p.weight_packed[ws_image_index<T>(s, 0, co, ps, c)] = big;
          p.weight_packed[ws_image_index<T>(s, 1, co, ps, c)] = small;
        }
      } else {
        p.weight_packed[(size_t)co * k_total + k] = v;
        if (s.ws_image) p.weight_packed[ws_image_index<T>(s, 0, co, ps, c)] = v;
      }
    }
    if (s.ra_image) {  // row co % 64 of the tile's taps, 16-byte chunks swizzled as wgmma reads them
      const int row = co % 64;
      T* image = p.weight_packed + (size_t)s.cout_pad * k_total + ((size_t)(co / 64) * s.taps * 64 + row) * 64;
      for (int k = threadIdx.x; k < s.taps * 64; k += blockDim.x) {
        const int tap = k / 64, position = k % 64, cl = ra_channel(position);
        T v = from_float<T>(0.f);
        if (co < s.cout && cl < p.cpg) v = p.weight[(size_t)(co * p.channels + cl) * s.taps + tap];
        image[(size_t)tap * 64 * 64 + ((position / 8) ^ (row % 8)) * 8 + position % 8] = v;
      }
    }
  }
}

// ---------------------------------------------------------------------------------------
// Shared by the GEMM kernel and its stages.
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
  // By tiles_m, patches_h * patches_w, patches_w, s.taps, s.kernel_w, s.chunks_per_q and
  // s.taps * s.chunks_per_q (set by launch_with).
  FastDiv by_tiles_m, by_per_image, by_patches_w, by_taps, by_kernel_w, by_cpq, by_per_group;
  int split_k;
  FastDiv by_split_k;  // a slice's K steps and rows (k_steps * split_k < 2^31: launch_with)
  // Launched before the stream's previous kernel has finished (no prepare kernel; kernels
  // that support it only): wait for it before the first access to global memory.
  bool early_launch;
  // Split-K slices share the reduction (split_k_shared; cooperative launch).
  bool shared_reduction;
};

// The K steps [k_begin, k_end) of slice `split`: k_steps * split / split_k in 32 bits; an
// unsplit launch needs no division.
template <typename T>
__device__ __forceinline__ void slice_steps(const GemmParams<T>& p, int split, int& k_begin, int& k_end) {
  k_begin = p.split_k == 1 ? 0 : p.by_split_k.div(p.s.k_steps * split);
  k_end = p.split_k == 1 ? p.s.k_steps : p.by_split_k.div(p.s.k_steps * (split + 1));
}

// Output pixel `pl` of pixel tile `tile`: false when it lies outside the image.
template <typename T>
__device__ __forceinline__ bool locate_pixel(const GemmParams<T>& p, int tile, int pl, int bm, int& n_img,
                                             int& pix, int& ho, int& wo) {
  n_img = p.by_per_image.div(tile);
  const int r = tile - n_img * p.by_per_image.d;
  const int ph = p.by_patches_w.div(r), pw = r - ph * p.patches_w;
  ho = ph * (bm / kPatchW) + pl / kPatchW;
  wo = pw * kPatchW + pl % kPatchW;
  pix = ho * p.s.out_w + wo;
  return ho < p.s.out_h && wo < p.s.out_w;
}

// The corner table: for (q, pixel) the four bilinear weights (mask folded in; NaN for a
// NaN coordinate) and the addresses of the four corners in the NHWC input (image and group
// included); a corner outside the image points at g_zero_pixel.
struct CornerTable {
  float4* weights;      // [kTableTaps][BM], as table_weights<T> encodes them
  ulonglong2* where;    // [kTableTaps][BM][2]: corners (0, 1) and (2, 3)
};
constexpr int kTableEntryBytes = 48;

// The bilinear weights of a table entry as the blend reads them: fp32 for bf16 and fp32;
// for fp16 four (w, w) half2 pairs in the same 16 bytes, rounded once per (pixel, tap)
// instead of in every K step that reads them (the packed blend's operands, same bits).
template <typename T>
__device__ __forceinline__ float4 table_weights(const float4& w) {
  if constexpr (std::is_same<T, __half>::value) {
    union {
      __half2 h[4];
      float4 f;
    } u;
    u.h[0] = __float2half2_rn(w.x);
    u.h[1] = __float2half2_rn(w.y);
    u.h[2] = __float2half2_rn(w.z);
    u.h[3] = __float2half2_rn(w.w);
    return u.f;
  } else {
    return w;
  }
}

// One corner-table entry, for the sample (y, x) of a pixel (`inside`: the pixel is in the
// output) with mask value m: the four bilinear weights with the mask folded in (NaN for a
// NaN coordinate, zero outside the input), as table_weights<T> encodes them, and the four
// corners' addresses in the NHWC input (image_pixel: the image's first pixel; channel:
// the group's first channel); a corner outside the image reads g_zero_pixel.
// Computed without branches, the corners as 32-bit element offsets (shape_supported
// bounds them). Both table fills (fill_corner_table, ra_entry) write entries through here.
template <typename T>
__device__ __forceinline__ void corner_entry(const GemmParams<T>& p, bool inside, float y, float x, float m,
                                             int image_pixel, int channel, float4& weights, ulonglong2* where) {
  const Shape& s = p.s;
  // A NaN coordinate compares false (not in range); its weights are NaN, its corners zero.
  const bool in_range = inside && y > -1.f && y < (float)s.height && x > -1.f && x < (float)s.width;
  const bool not_a_number = inside && (isnan(y) || isnan(x));
  const float yc = in_range ? y : 0.f, xc = in_range ? x : 0.f;
  const float yf = floorf(yc), xf = floorf(xc);
  const int y0 = (int)yf, x0 = (int)xf;
  const float ly = yc - yf, lx = xc - xf, hy = 1.f - ly, hx = 1.f - lx;
  const float other = not_a_number ? __int_as_float(0x7fc00000) : 0.f;  // the weights outside the range
  const float4 w = in_range ? make_float4(hy * hx * m, hy * lx * m, ly * hx * m, ly * lx * m)
                            : make_float4(other, other, other, other);
  const bool top = in_range && y0 >= 0, bottom = in_range && y0 + 1 <= s.height - 1;
  const bool left = x0 >= 0, right = x0 + 1 <= s.width - 1;
  const int corner = (image_pixel + y0 * s.width + x0) * s.c_pad + channel, down = s.width * s.c_pad;
  const unsigned long long zero = reinterpret_cast<unsigned long long>(&g_zero_pixel[0]);
  auto address = [&](bool valid, int element) {
    return valid ? reinterpret_cast<unsigned long long>(p.input_nhwc + element) : zero;
  };
  weights = table_weights<T>(w);
  where[0] = make_ulonglong2(address(top && left, corner), address(top && right, corner + s.c_pad));
  where[1] = make_ulonglong2(address(bottom && left, corner + down), address(bottom && right, corner + down + s.c_pad));
}

template <typename T, int STRIDE>
__device__ __forceinline__ void fill_corner_table(const GemmParams<T>& p, CornerTable t, int bm,
                                                  int tile, int q_lo, int nq) {
  // Each thread keeps one pixel (blockDim.x = STRIDE * bm) and walks (group, tap) pairs
  // STRIDE apart: the pixel's position and its offset/mask addresses are computed once,
  // and the pair indices advance without divisions. All of a thread's offset and mask
  // loads are issued before the first is used (one round trip to memory, not one per pair).
  // The fill is run by every thread of a block before its first K step, so its
  // instructions are on every layer's critical path.
  constexpr int kIter = (kTableTaps + STRIDE - 1) / STRIDE;
  const Shape& s = p.s;
  const int plane = s.out_h * s.out_w;
  const int pl = (int)threadIdx.x % bm;
  const int qi0 = (int)threadIdx.x / bm;
  if (qi0 >= nq) return;
  int n_img, pix, ho, wo;
  const bool inside = locate_pixel(p, tile, pl, bm, n_img, pix, ho, wo);
  const int kernel_h = p.by_kernel_w.div(s.taps);
  // Offsets [N, 2 * pairs, Ho, Wo] and mask [N, pairs, Ho, Wo]: this thread's first pair,
  // then STRIDE pairs further each iteration.
  const size_t pair0 = (size_t)n_img * s.dg * s.taps + q_lo + qi0;
  const size_t pair_step = (size_t)STRIDE * plane;
  const T* off = p.offset + 2 * pair0 * plane + pix;
  const T* msk = p.mask + pair0 * plane + pix;
  float dy[kIter], dx[kIter], mk[kIter];
#pragma unroll
  for (int it = 0; it < kIter; ++it) {
    const bool live = inside && qi0 + it * STRIDE < nq;
    dy[it] = live ? to_float(off[2 * it * pair_step]) : 0.f;
    dx[it] = live ? to_float(off[2 * it * pair_step + plane]) : 0.f;
    mk[it] = live ? to_float(msk[it * pair_step]) : 0.f;
  }
  int q = q_lo + qi0;
  int g = s.dg == 1 ? 0 : p.by_taps.div(q);
  int i = p.by_kernel_w.div(q - g * s.taps), j = (q - g * s.taps) - i * s.kernel_w;
  const int image_pixel = n_img * s.height * s.width;  // the image's first pixel in the NHWC input
  const int y_base = ho * s.stride_h - s.pad_h, x_base = wo * s.stride_w - s.pad_w;
#pragma unroll
  for (int it = 0; it < kIter; ++it) {
    const int qi = qi0 + it * STRIDE;
    if (qi >= nq) break;
    const float y = (float)(y_base + i * s.dil_h) + dy[it];
    const float x = (float)(x_base + j * s.dil_w) + dx[it];
    corner_entry(p, inside, y, x, mk[it], image_pixel, g * s.cpg_pad, t.weights[qi * bm + pl],
                 &t.where[2 * (qi * bm + pl)]);
    for (j += STRIDE; j >= s.kernel_w;) {  // (g, i, j) of pair q + STRIDE
      j -= s.kernel_w;
      if (++i == kernel_h) {
        i = 0;
        ++g;
      }
    }
  }
}

// Loads the four corners (16 bytes each) of one thread's share of a pixel's chunk:
// `entry` is the pixel's table entry, `element` the thread's first channel in the group.
template <typename T>
__device__ __forceinline__ void gather4(const ulonglong2* entry, int element, uint4 (&v)[4]) {
  const ulonglong2 a = entry[0], b = entry[1];
  v[0] = __ldg(reinterpret_cast<const uint4*>(reinterpret_cast<const T*>(a.x) + element));
  v[1] = __ldg(reinterpret_cast<const uint4*>(reinterpret_cast<const T*>(a.y) + element));
  v[2] = __ldg(reinterpret_cast<const uint4*>(reinterpret_cast<const T*>(b.x) + element));
  v[3] = __ldg(reinterpret_cast<const uint4*>(reinterpret_cast<const T*>(b.y) + element));
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

// fp16: the four corners blended with packed half2 FMAs, eight channels in four
// instructions per corner. The bilinear weights (mask folded in) are computed in fp32 and
// rounded to fp16 once; the blended value is rounded to fp16 for the MMA anyway, so the
// packed blend adds a few fp16 roundings per sample, not the half-precision coordinate
// error of torchvision's kernel (bench/NOTES.md: 2.2e-4 -> the measured figure there).
// `w` holds the four weights as half2 pairs (table_weights<__half>).
__device__ __forceinline__ uint4 blend_packed(const uint4 (&v)[4], const float4& w) {
  union {
    float4 f;
    __half2 h[4];
  } weights;
  weights.f = w;  // one 16-byte load from the table
  const __half2 w0 = weights.h[0], w1 = weights.h[1], w2 = weights.h[2], w3 = weights.h[3];
  const __half2* c0 = reinterpret_cast<const __half2*>(&v[0]);
  const __half2* c1 = reinterpret_cast<const __half2*>(&v[1]);
  const __half2* c2 = reinterpret_cast<const __half2*>(&v[2]);
  const __half2* c3 = reinterpret_cast<const __half2*>(&v[3]);
  uint4 r;
  __half2* o = reinterpret_cast<__half2*>(&r);
#pragma unroll
  for (int i = 0; i < 4; ++i) o[i] = __hfma2(c3[i], w3, __hfma2(c2[i], w2, __hfma2(c1[i], w1, __hmul2(c0[i], w0))));
  return r;
}

// One thread's 16 bytes of a pixel's chunk, blended and packed for the A tile.
template <typename T>
__device__ __forceinline__ uint4 blend_vector(const uint4 (&v)[4], const float4& w) {
  if constexpr (std::is_same<T, __half>::value) {
    return blend_packed(v, w);
  } else {  // bf16: 8 mantissa bits leave no room for packed rounding; fp32: exact
    float r[Traits<T>::kVec];
    blend<T>(v, w, r);
    return pack(r, (const T*)nullptr);
  }
}

// The corners of a thread's PPT pixels (table entries kStride pixels apart from `entry`).
template <typename T, int PPT, int kStride>
__device__ __forceinline__ void gather_pixels(const ulonglong2* entry, int element, uint4 (&v)[PPT][4]) {
#pragma unroll
  for (int j = 0; j < PPT; ++j) gather4<T>(entry + 2 * j * kStride, element, v[j]);
}

// Split-K: store this block's accumulators; if it is the tile's last slice to finish,
// sum all slices in a fixed order (repeatable results). Returns whether to run the epilogue.
// Every thread of the block calls it; the accumulators are those of the first kHolders
// threads (0: all of them; the warp-specialised kernel's consumer warpgroup holds them all).
template <int kAcc, int kHolders = 0>
__device__ __forceinline__ bool split_k_reduce(float (&acc)[kAcc], float* partials, int* counters,
                                               int tile, int split, int split_k, int* flag) {
  const int threads = kHolders > 0 ? kHolders : (int)blockDim.x;
  const bool holder = kHolders == 0 || (int)threadIdx.x < kHolders;
  float* mine = partials + ((size_t)tile * split_k + split) * kAcc * threads;
  if (holder) {
#pragma unroll
    for (int a = 0; a < kAcc; ++a) __stcg(mine + a * threads + threadIdx.x, acc[a]);
  }
  // One thread releases the block's partials and acquires the others' with one acq_rel
  // atomic: the barrier before it orders every thread's stores before the release (PTX
  // release is cumulative), the barrier after it orders the acquire before every thread's
  // loads (a fence in each thread did the same work 256 times).
  __syncthreads();
  if (threadIdx.x == 0) {
    int before;
    asm volatile("atom.acq_rel.gpu.global.add.s32 %0, [%1], 1;\n" : "=r"(before) : "l"(counters + tile) : "memory");
    *flag = before == split_k - 1;
  }
  __syncthreads();
  if (!*flag) return false;
  if (!holder) return true;
  float sum[kAcc];
#pragma unroll
  for (int a = 0; a < kAcc; ++a) sum[a] = 0.f;
#pragma unroll 4
  for (int s = 0; s < split_k; ++s) {
    const float* slice = partials + ((size_t)tile * split_k + s) * kAcc * threads;
#pragma unroll
    for (int a = 0; a < kAcc; ++a)  // kHolders: its own slice from memory too (acc then needs no registers here)
      sum[a] += kHolders == 0 && s == split ? acc[a] : __ldcg(slice + a * threads + threadIdx.x);
  }
#pragma unroll
  for (int a = 0; a < kAcc; ++a) acc[a] = sum[a];
  if (threadIdx.x == 0) counters[tile] = 0;  // ready for the next launch
  return true;
}

// Split-K whose slices share the reduction and the epilogue (warp-specialised kernel,
// launched cooperatively: every slice of a tile is resident at once, so a slice may wait
// for the others). Each slice stores its fp32 partials ([slice][row][column] per tile),
// waits until the tile's counter has all slices, then sums rows [r0, r1) of the tile over
// the slices in slice order, as split_k_reduce does (the same bits), adds the bias and
// stores them. The last slice summing the whole tile read every slice's partials through
// one SM (128 KB for 8 slices of 64x64) and ran the whole epilogue alone.
//
// The counter goes to split_k on arrival and to 2 split_k as slices leave; the slice that
// leaves last, after every slice has seen the full count, zeroes it for the next launch.
template <typename T, int BM, int BN, int kHolders, int kAcc>
__device__ __forceinline__ void split_k_shared(const GemmParams<T>& p, const float (&acc)[kAcc], float bias,
                                               int tile_m_idx, int n0, int split) {
  __shared__ float bias_tile[BN];
  const int tid = threadIdx.x, split_k = p.split_k;
  int* const counter = p.counters + blockIdx.x;
  float* const partials = p.partials + (size_t)blockIdx.x * split_k * BM * BN;
  // The consumer's accumulators (its kHolders threads with real rows), in
  // igemm_wgmma_kernel's layout: BN / 2 a thread per m64 product, rows 64 apart (BM 128
  // runs two).
  constexpr int kPerM = BN / 2;
  if (tid < kHolders) {
    const int warp = tid / 32, lane = tid % 32;
    // The thread's first pair; the others sit at compile-time offsets from it.
    float* const mine = partials + (size_t)split * BM * BN + (warp * 16 + lane / 4) * BN + 2 * (lane % 4);
#pragma unroll
    for (int i = 0; i < kAcc; i += 2) {
      const int mt = i / kPerM, j = i % kPerM;
      __stcg(reinterpret_cast<float2*>(mine + (64 * mt + 8 * ((j / 2) % 2)) * BN + 8 * (j / 4)),
             make_float2(acc[i], acc[i + 1]));
    }
  }
  if (tid < BN) bias_tile[tid] = bias;
  // As in split_k_reduce: the barrier orders the block's stores before thread 0's release,
  // the one after its acquire orders the other slices' partials before every thread's loads.
  __syncthreads();
  if (tid == 0) {
    asm volatile("red.release.gpu.global.add.s32 [%0], 1;\n" ::"l"(counter) : "memory");
    int arrived;
    do {
      asm volatile("ld.acquire.gpu.global.s32 %0, [%1];\n" : "=r"(arrived) : "l"(counter) : "memory");
    } while (arrived < split_k);
  }
  __syncthreads();
  const Shape& s = p.s;
  const int r0 = p.by_split_k.div(BM * split), rows = p.by_split_k.div(BM * (split + 1)) - r0;
  constexpr int kQuads = BN / 4;
  const int plane = s.out_h * s.out_w;
  const bool vector_ok = s.cout % 4 == 0 && reinterpret_cast<uintptr_t>(p.output) % (4 * sizeof(T)) == 0;
  struct alignas(4 * sizeof(T)) Quad {
    T v[4];
  };
  auto reduce_quad = [&](int row, int col) {
    const float* src = partials + row * BN + col;
    float4 sum = make_float4(0.f, 0.f, 0.f, 0.f);
#pragma unroll 8
    for (int slice = 0; slice < split_k; ++slice) {
      const float4 v = __ldcg(reinterpret_cast<const float4*>(src + (size_t)slice * BM * BN));
      sum.x += v.x;
      sum.y += v.y;
      sum.z += v.z;
      sum.w += v.w;
    }
    int n_img, pix, ho, wo;
    if (!locate_pixel(p, tile_m_idx, row, BM, n_img, pix, ho, wo)) return;
    Quad out;
    out.v[0] = from_float<T>(sum.x + bias_tile[col]);
    out.v[1] = from_float<T>(sum.y + bias_tile[col + 1]);
    out.v[2] = from_float<T>(sum.z + bias_tile[col + 2]);
    out.v[3] = from_float<T>(sum.w + bias_tile[col + 3]);
    if (s.channels_last) {
      T* dst = p.output + ((size_t)n_img * plane + pix) * s.cout + n0 + col;
      if (vector_ok && n0 + col + 4 <= s.cout) {
        *reinterpret_cast<Quad*>(dst) = out;
      } else {
        for (int j = 0; j < 4 && n0 + col + j < s.cout; ++j) dst[j] = out.v[j];
      }
    } else {
      T* dst = p.output + ((size_t)n_img * s.cout + n0 + col) * plane + pix;
      for (int j = 0; j < 4 && n0 + col + j < s.cout; ++j) dst[(size_t)j * plane] = out.v[j];
    }
  };
  // Consecutive threads along a pixel's channels (channels-last) or along pixels (NCHW).
  if (s.channels_last) {
    for (int e = tid; e < rows * kQuads; e += blockDim.x) reduce_quad(r0 + e / kQuads, 4 * (e % kQuads));
  } else {
    for (int e = tid; e < rows * kQuads; e += blockDim.x) {
      const int quad = e / rows;
      reduce_quad(r0 + (e - quad * rows), 4 * quad);
    }
  }
  if (tid == 0) {
    int before;
    asm volatile("atom.relaxed.gpu.global.add.s32 %0, [%1], 1;\n" : "=r"(before) : "l"(counter) : "memory");
    if (before == 2 * split_k - 1) *counter = 0;
  }
}

template <int N>
__device__ __forceinline__ void cp_async_wait_pending() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N));
}

// The K loop shared by the kernels. Stage::load<R>(kpos, q, chunk, buf) gathers the step
// (q, chunk) into the register set R and starts the copy of its weights (packed K step
// kpos = q * chunks_per_q + chunk) into buffer `buf`; Stage::store<R>(buf, q) blends
// register set R into A tile `buf`; Stage::compute(buf) multiplies tiles `buf` (or, with
// wgmma, starts multiplying them); Stage::retire() waits for that product;
// Stage::publish() makes the thread's shared-memory writes visible to the tensor cores'
// asynchronous reads, before the step's barrier. Stage::kDepth steps of gathers are in
// flight at once (2: two register sets, three shared-memory buffers).
//
// Step order. Without split-K the steps run chunk-major within each deformable group: all
// taps of channel chunk 0, then all taps of chunk 1, ... (step ks = (g * chunks_per_q +
// chunk) * taps + tap). The nine taps of a chunk sample the same neighbourhood, so the
// lines a block keeps in L1 between two uses shrink by chunks_per_q against tap-major
// order (fp32 128->128 at 64x64: 54.6 -> 51 us). Split-K slices stay tap-major (ks = q *
// chunks_per_q + chunk): a short slice then needs the corner table of a few taps only,
// where chunk-major would need all nine. The order depends on the split alone, so a call
// always sums in the same order (choose_config says when a batch differs). The corner
// table holds kTableTaps (group, tap) pairs: one fill serves every chunk of a 3x3 kernel;
// larger kernels refill it per window of taps.
template <typename T, typename Stage>
__device__ __forceinline__ void k_loop(const GemmParams<T>& p, Stage& st, CornerTable table, int bm,
                                       int tile, int k_begin, int k_end) {
  constexpr int D = Stage::kDepth, NB = D + 1;
  const int cpq = p.s.chunks_per_q, taps = p.s.taps;
  const int per_group = cpq * taps;
  const bool chunk_major = p.split_k == 1;
  for (int lo = k_begin; lo < k_end;) {
    // The phase starting at step lo: its first (q, chunk), its table's (group, tap) pairs
    // [q_lo, q_lo + nq), its end hi, and where q wraps to the next chunk (chunk-major).
    int q0, chunk0, q_lo, nq, hi, q_wrap = 0, q_restart = 0;
    if (chunk_major) {
      const int g = p.by_per_group.div(lo), r = lo - g * per_group;
      chunk0 = p.by_taps.div(r);
      const int tap0 = r - chunk0 * taps;
      const int w_begin = tap0 / kTableTaps * kTableTaps;
      const int w_end = taps - w_begin < kTableTaps ? taps : w_begin + kTableTaps;
      hi = taps <= kTableTaps ? (g + 1) * per_group : lo + (w_end - tap0);
      if (hi > k_end) hi = k_end;
      // Taps the phase uses: [tap0, tap0 + steps) when it stays within one chunk, else the window.
      const bool one_pass = tap0 + (hi - lo) <= w_end;
      q0 = g * taps + tap0;
      q_lo = one_pass ? q0 : g * taps + w_begin;
      nq = one_pass ? hi - lo : w_end - w_begin;
      q_wrap = g * taps + w_end;
      q_restart = g * taps + w_begin;
    } else {
      q0 = p.by_cpq.div(lo);
      chunk0 = lo - q0 * cpq;
      q_lo = q0;
      const int q_last = p.by_cpq.div(k_end - 1);
      nq = q_last - q_lo + 1 < kTableTaps ? q_last - q_lo + 1 : kTableTaps;
      hi = k_end < (q_lo + nq) * cpq ? k_end : (q_lo + nq) * cpq;
    }
    __syncthreads();  // the previous phase has finished reading the table and the tiles
    fill_corner_table<T, Stage::kTableStride>(p, table, bm, tile, q_lo, nq);
    wait_for_prepare();
    __syncthreads();
    if (DCN_IGEMM_PROBE == 3) {
      lo = hi;
      continue;
    }
    st.q_lo = q_lo;
    // (q, chunk) of the next step, without divisions.
    auto advance = [=](int& q, int& chunk) {
      if (chunk_major) {
        if (++q == q_wrap) {
          q = q_restart;
          ++chunk;
        }
      } else if (++chunk == cpq) {
        chunk = 0;
        ++q;
      }
    };
    int load_q = q0, load_chunk = chunk0;  // the next step to gather
    int store_q = load_q, store_chunk = load_chunk;     // the next step to blend
    st.template load<0>(load_q * cpq + load_chunk, load_q, load_chunk, 0);
    advance(load_q, load_chunk);
    if (D == 2 && lo + 1 < hi) {
      st.template load<D - 1>(load_q * cpq + load_chunk, load_q, load_chunk, 1);
      advance(load_q, load_chunk);
    }
    st.template store<0>(0, store_q);
    advance(store_q, store_chunk);
    if (D == 2 && lo + 1 < hi) cp_async_wait_pending<1>(); else cp_async_wait_pending<0>();
    st.publish();
    __syncthreads();
    for (int ks = lo; ks < hi; ++ks) {
      const int i = ks - lo;
      if (D == 2) {
        if (ks + 2 < hi) {
          if (i & 1) st.template load<D - 1>(load_q * cpq + load_chunk, load_q, load_chunk, (i + 2) % NB);
          else st.template load<0>(load_q * cpq + load_chunk, load_q, load_chunk, (i + 2) % NB);
          advance(load_q, load_chunk);
        }
        st.compute(i % NB);
        if (ks + 1 < hi) {
          if (i & 1) st.template store<0>((i + 1) % NB, store_q);
          else st.template store<D - 1>((i + 1) % NB, store_q);
          advance(store_q, store_chunk);
        }
        st.retire();
        if (ks + 2 < hi) cp_async_wait_pending<1>(); else cp_async_wait_pending<0>();
      } else {
        if (ks + 1 < hi) st.template load<0>(load_q * cpq + load_chunk, load_q, load_chunk, (i + 1) & 1);
        st.compute(i & 1);
        if (ks + 1 < hi) {
          st.template store<0>((i + 1) & 1, load_q);
          advance(load_q, load_chunk);
        }
        st.retire();
        cp_async_wait_pending<0>();
      }
      st.publish();
      __syncthreads();
    }
    lo = hi;
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

__device__ __forceinline__ void mma1688_tf32(float (&d)[4], const uint32_t (&a)[4], const uint32_t* b) {
  asm volatile(
      "mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
      "{%0,%1,%2,%3};\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}

// Blocks an SM should hold at once (caps registers so that the gathers of several blocks
// are in flight together). fp32's 64x128 and 128x64 8-warp tiles fit once per SM anyway
// (two B tiles of shared memory), so they get the registers of one block: no spills.
template <typename T, int BM, int BN, int THREADS>
struct MinBlocks {
  static constexpr int value =
      THREADS == 256 ? (BM * BN >= (sizeof(T) == 4 ? 64 * 128 : 128 * 128) ? 1 : 2)
                     : (BN == 128 ? 2 : (BM == 64 ? 3 : 4));
};

template <typename T, int BM, int BN, int WARPS_M, int THREADS>
struct MmaShape {
  static constexpr int kChunk = Traits<T>::kChunk;  // 64 channels (k) per step; 32 for fp32
  // Padded smem row: 144 bytes; conflict-free for ldmatrix (16-bit) and for the 32-bit
  // fragment loads of 3xTF32 (a row stride of 36 words spreads 8 rows x 4 lanes over 32 banks).
  static constexpr int kRow = kChunk + 16 / (int)sizeof(T);
  static constexpr int kBParts = Traits<T>::kTf32x3 ? 2 : 1;  // fp32: big and small B tiles
  static constexpr int kThreads = THREADS;
  static constexpr int kPixelsPerPass = THREADS / kLanesPerPixel;
  static constexpr int WARPS_N = THREADS / 32 / WARPS_M;
  static constexpr int WM = BM / WARPS_M, WN = BN / WARPS_N;
  static constexpr int MT = WM / 16, NT = WN / 8;
  static constexpr int kAcc = MT * NT * 4;
  static constexpr int PPT = BM / kPixelsPerPass;            // pixels gathered per thread
  static constexpr int BPT = BN * kLanesPerPixel / kThreads;  // weight vectors per thread
  static constexpr int kDepth = PPT <= 2 ? 2 : 1;  // steps of gathers in flight (registers allowing)
  static constexpr int kSmemATile = (kDepth + 1) * BM * kRow * (int)sizeof(T);
  static constexpr int kSmemB = kBParts * (kDepth + 1) * BN * kRow * (int)sizeof(T);
  static constexpr int kSmemTable = kTableTaps * BM * kTableEntryBytes;
  // fp32: split A into its TF32 big and small parts once, when the blend stores it (two A
  // tiles), rather than in every warp that reads it (WARPS_N warps read each A row); only
  // where the second tile still leaves room for MinBlocks blocks per SM on an H100.
  static constexpr bool kSplitA =
      Traits<T>::kTf32x3 && WARPS_N >= 2 &&
      MinBlocks<T, BM, BN, THREADS>::value * (2 * kSmemATile + kSmemB + kSmemTable + 1024) <= 228 * 1024;
  static constexpr int kSmemA = (kSplitA ? 2 : 1) * kSmemATile;
  static constexpr int kSmem = kSmemA + kSmemB + kSmemTable;
  static_assert(BN * (BM + 8) * (int)sizeof(T) <= kSmemA + kSmemB, "epilogue staging fits");
  static_assert(BM * (BN + 8) * (int)sizeof(T) <= kSmemA + kSmemB, "channels-last staging fits");
  static_assert(MT >= 1 && NT % 2 == 0 && PPT >= 1 && BPT >= 1, "tile");
  static_assert(THREADS % BM == 0, "epilogue: one pixel per thread and pass");
};

template <typename T, int BM, int BN, int WARPS_M, int THREADS>
struct MmaStage {
  using K = MmaShape<T, BM, BN, WARPS_M, THREADS>;
  const GemmParams<T>& p;
  T* smem_a;  // [kDepth + 1][BM][kRow]
  T* smem_b;  // [kBParts][kDepth + 1][BN][kRow]
  CornerTable table;
  int q_lo;
  int lane8, pixel0;  // this thread's 16 bytes within a pixel's chunk; its first pixel
  int warp_m, warp_n, lane, n0;
  size_t k_total;
  static constexpr int kDepth = K::kDepth;
  static constexpr int kTableStride = THREADS / BM;  // (group, tap) pairs between a thread's table entries
  uint4 vals[K::kDepth][K::PPT][4];
  float acc[K::MT][K::NT][4];

  const T* b_src;  // this thread's first weight vector of step 0
  int b_dst;       // its offset in a B buffer

  template <int R>
  __device__ __forceinline__ void load(int kpos, int q, int chunk, int buf) {
    gather_pixels<T, K::PPT, K::kPixelsPerPass>(table.where + 2 * ((q - q_lo) * BM + pixel0),
                                                 chunk * K::kChunk + lane8 * Traits<T>::kVec, vals[R]);
    const T* src = b_src + (size_t)kpos * K::kChunk;
    T* dst = smem_b + buf * BN * K::kRow + b_dst;
#pragma unroll
    for (int part = 0; part < K::kBParts; ++part)  // fp32: the small parts follow the big ones
#pragma unroll
      for (int j = 0; j < K::BPT; ++j)  // rows j * kPixelsPerPass apart
        cp_async16(dst + part * (K::kDepth + 1) * BN * K::kRow + j * K::kPixelsPerPass * K::kRow,
                   src + part * (size_t)p.s.cout_pad * k_total + j * K::kPixelsPerPass * k_total);
    cp_async_commit();
  }
  template <int R>
  __device__ __forceinline__ void store(int buf, int q) {
#pragma unroll
    for (int j = 0; j < K::PPT; ++j) {
      const int pl = pixel0 + j * K::kPixelsPerPass;
      const uint4 packed = blend_vector<T>(vals[R][j], table.weights[(q - q_lo) * BM + pl]);
      T* dst = smem_a + (buf * BM + pl) * K::kRow + lane8 * Traits<T>::kVec;
      if constexpr (K::kSplitA) {
        store_split_tf32(packed, reinterpret_cast<char*>(dst), K::kSmemATile);
      } else {
        *reinterpret_cast<uint4*>(dst) = packed;
      }
    }
  }
  __device__ __forceinline__ void retire() {}   // mma.sync has finished when compute returns
  __device__ __forceinline__ void publish() {}  // ldmatrix reads through the generic proxy
  // ldmatrix.x4 lane addresses (in elements) for the A rows [mt * 16, + 16) and the B rows
  // [nt * 8, + 16) at K column kk. A TF32 fragment is the 16-bit one with 16-byte columns of
  // four words (see compute_tf32x3), so one formula in 16-byte columns serves both.
  static constexpr int kColumn = 16 / (int)sizeof(T);
  __device__ __forceinline__ int a_lane_offset(int mt, int kk) const {
    return (mt * 16 + lane % 16) * K::kRow + kk + (lane / 16) * kColumn;
  }
  __device__ __forceinline__ int b_lane_offset(int nt, int kk) const {
    return (nt * 8 + lane % 8 + (lane / 16) * 8) * K::kRow + kk + ((lane / 8) % 2) * kColumn;
  }
  // The B fragments of output tiles nt and nt + 1, from one ldmatrix.x4 at `at`.
  static __device__ __forceinline__ void load_b_pair(uint32_t (&b)[K::NT][2], int nt, const T* at) {
    uint32_t r[4];
    ldmatrix_x4(r, at);
    b[nt][0] = r[0];
    b[nt][1] = r[1];
    b[nt + 1][0] = r[2];
    b[nt + 1][1] = r[3];
  }
  __device__ __forceinline__ void compute(int buf) {
    const T* a_base = smem_a + (buf * BM + warp_m * K::WM) * K::kRow;
    const T* b_base = smem_b + (buf * BN + warp_n * K::WN) * K::kRow;
    if constexpr (Traits<T>::kTf32x3) {
      compute_tf32x3(a_base, b_base);
    } else {
      compute_16bit(a_base, b_base);
    }
  }
  __device__ __forceinline__ void compute_16bit(const T* a_base, const T* b_base) {
#pragma unroll
    for (int kk = 0; kk < K::kChunk; kk += 16) {
      uint32_t af[K::MT][4], bf[K::NT][2];
#pragma unroll
      for (int mt = 0; mt < K::MT; ++mt) ldmatrix_x4(af[mt], a_base + a_lane_offset(mt, kk));
#pragma unroll
      for (int nt = 0; nt < K::NT; nt += 2) load_b_pair(bf, nt, b_base + b_lane_offset(nt, kk));
#pragma unroll
      for (int mt = 0; mt < K::MT; ++mt)
#pragma unroll
        for (int nt = 0; nt < K::NT; ++nt) mma16816<T>(acc[mt][nt], af[mt], bf[nt]);
    }
  }
  // fp32: m16n8k8 TF32 fragments through ldmatrix. An 8x8 matrix of 16-bit elements is an
  // 8x4 matrix of 32-bit words, and lane l receives word l % 4 of row l / 4: exactly the
  // TF32 fragment's (row g, column t) element, so the lane addresses are the 16-bit ones
  // with 16-byte columns of four words (a_lane_offset, b_lane_offset). A is split into big and small parts either when
  // stored (kSplitA) or here; B was split when packed. The small products go first so
  // that they are not lost against the big one.
  __device__ __forceinline__ void compute_tf32x3(const T* a_base, const T* b_base) {
    const T* a_small_base = a_base + (K::kDepth + 1) * BM * K::kRow;  // kSplitA only
    const T* b_small = b_base + (K::kDepth + 1) * BN * K::kRow;
#pragma unroll
    for (int kk = 0; kk < K::kChunk; kk += 8) {
      uint32_t a_big[K::MT][4], a_small[K::MT][4], b_big[K::NT][2], b_sm[K::NT][2];
#pragma unroll
      for (int mt = 0; mt < K::MT; ++mt) {
        const int a_offset = a_lane_offset(mt, kk);
        ldmatrix_x4(a_big[mt], a_base + a_offset);
        if constexpr (K::kSplitA) {
          ldmatrix_x4(a_small[mt], a_small_base + a_offset);
        } else {
#pragma unroll
          for (int i = 0; i < 4; ++i) split_tf32(a_big[mt][i], a_big[mt][i], a_small[mt][i]);
        }
      }
#pragma unroll
      for (int nt = 0; nt < K::NT; nt += 2) {
        load_b_pair(b_big, nt, b_base + b_lane_offset(nt, kk));
        load_b_pair(b_sm, nt, b_small + b_lane_offset(nt, kk));
      }
#pragma unroll
      for (int mt = 0; mt < K::MT; ++mt)
#pragma unroll
        for (int nt = 0; nt < K::NT; ++nt) {
          mma1688_tf32(acc[mt][nt], a_small[mt], b_big[nt]);
          mma1688_tf32(acc[mt][nt], a_big[mt], b_sm[nt]);
          mma1688_tf32(acc[mt][nt], a_big[mt], b_big[nt]);
        }
    }
  }
};

// The bias of output channel n0 + threadIdx.x (0 past the tile, the channels or without
// bias). Loaded when the kernel starts, so that its latency hides behind the K loop.
template <typename T, int BN>
__device__ __forceinline__ float tile_bias(const GemmParams<T>& p, int n0) {
  const int c = n0 + (int)threadIdx.x;
  return p.bias != nullptr && (int)threadIdx.x < BN && c < p.s.cout ? to_float(p.bias[c]) : 0.f;
}

// Epilogue shared by the kernels: bias, cast, stage the BM x BN tile in shared memory
// ([n][m] for NCHW output, [m][n] for channels-last), then store along pixels (NCHW) or
// along each pixel's channels (channels-last). `fragments(put)` calls put(row, column, v0,
// v1) for each pair of the thread's accumulators that sit in columns `column` (even) and
// `column + 1` of one row (both MMA layouts hold such pairs); `bias` is tile_bias<T, BN>.
// Thread c puts the bias of column c in shared memory: each accumulator then reads it there
// (a global load per accumulator serialised about 30 cached loads in every warp's
// epilogue). The layout is chosen once, outside the accumulator loop, and a channels-last
// pair is one 4-byte (8-byte for fp32) store.
template <typename T>
__device__ __forceinline__ void store_pair(T* dst, float v0, float v1) {
  if constexpr (std::is_same<T, __half>::value) {
    *reinterpret_cast<__half2*>(dst) = __floats2half2_rn(v0, v1);
  } else if constexpr (std::is_same<T, __nv_bfloat16>::value) {
    *reinterpret_cast<__nv_bfloat162*>(dst) = __floats2bfloat162_rn(v0, v1);
  } else {
    *reinterpret_cast<float2*>(dst) = make_float2(v0, v1);
  }
}

template <typename T, int BM, int BN, int THREADS, typename Fragments>
__device__ __forceinline__ void store_tile(const GemmParams<T>& p, char* smem, int tile_m_idx, int n0,
                                           float bias, Fragments fragments) {
  static_assert(THREADS % BM == 0, "epilogue: one pixel per thread and pass");
  static_assert(BN <= THREADS, "one bias per thread");
  __shared__ __align__(8) float bias_tile[BN];
  const Shape& s = p.s;
  const int tid = threadIdx.x;
  T* smem_c = reinterpret_cast<T*>(smem);
  if (tid < BN) bias_tile[tid] = bias;
  __syncthreads();
  if (s.channels_last) {
    fragments([&](int row, int col, float v0, float v1) {
      const float2 b = *reinterpret_cast<const float2*>(&bias_tile[col]);
      store_pair<T>(smem_c + row * (BN + 8) + col, v0 + b.x, v1 + b.y);
    });
  } else {
    fragments([&](int row, int col, float v0, float v1) {
      const float2 b = *reinterpret_cast<const float2*>(&bias_tile[col]);
      smem_c[col * (BM + 8) + row] = from_float<T>(v0 + b.x);
      smem_c[(col + 1) * (BM + 8) + row] = from_float<T>(v1 + b.y);
    });
  }
  __syncthreads();
  const int plane = s.out_h * s.out_w;
  if (s.channels_last) {  // 16-byte stores along each pixel's channels
    constexpr int kVec = Traits<T>::kVec, kVecs = BN / kVec;
    const bool vector_ok = s.cout % kVec == 0 && reinterpret_cast<uintptr_t>(p.output) % 16 == 0;
    for (int e = tid; e < BM * kVecs; e += THREADS) {
      const int pl = e / kVecs, col = (e - pl * kVecs) * kVec;
      int n_img, pix, ho, wo;
      if (n0 + col >= s.cout || !locate_pixel(p, tile_m_idx, pl, BM, n_img, pix, ho, wo)) continue;
      T* dst = p.output + ((size_t)n_img * plane + pix) * s.cout + n0 + col;
      const T* src = smem_c + pl * (BN + 8) + col;
      if (vector_ok) {
        *reinterpret_cast<uint4*>(dst) = *reinterpret_cast<const uint4*>(src);
      } else {
        for (int c = 0; c < kVec && n0 + col + c < s.cout; ++c) dst[c] = src[c];
      }
    }
    return;
  }
  // THREADS is a multiple of BM: each thread stores one pixel's channels.
  const int pl = tid % BM;
  int n_img, pix, ho, wo;
  if (locate_pixel(p, tile_m_idx, pl, BM, n_img, pix, ho, wo)) {
    T* out = p.output + (size_t)n_img * s.cout * plane + pix;
    for (int col = tid / BM; col < BN; col += THREADS / BM) {
      if (n0 + col < s.cout) out[(size_t)(n0 + col) * plane] = smem_c[col * (BM + 8) + pl];
    }
  }
}

// Every Tile with its kernel parameters (NAME, BM, BN, WARPS_M, THREADS), listed once for
// the launcher and the occupancy estimate.
#define DCN_IGEMM_TILES(X)          \
  X(k32x64, 32, 64, 2, 128)         \
  X(k64x64, 64, 64, 2, 128)         \
  X(k64x128, 64, 128, 2, 128)       \
  X(k32x128, 32, 128, 2, 128)       \
  X(k32x64w8, 32, 64, 2, 256)       \
  X(k64x64w8, 64, 64, 2, 256)       \
  X(k64x128w8, 64, 128, 2, 256)     \
  X(k128x64w8, 128, 64, 4, 256)     \
  X(k128x128w8, 128, 128, 2, 256)

template <typename T, int BM, int BN, int WARPS_M, int THREADS>
__global__ void __launch_bounds__(THREADS, MinBlocks<T, BM, BN, THREADS>::value) igemm_mma_kernel(GemmParams<T> p) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  if (DCN_IGEMM_PROBE == 1) return;
  using K = MmaShape<T, BM, BN, WARPS_M, THREADS>;
  extern __shared__ uint4 smem_dyn[];
  __shared__ int last_flag;
  char* smem = reinterpret_cast<char*>(smem_dyn);
  const Shape& s = p.s;
  const int tid = threadIdx.x;
  const int tile_n_idx = p.by_tiles_m.div(blockIdx.x), tile_m_idx = blockIdx.x - tile_n_idx * p.tiles_m;
  const int split = blockIdx.y;

  MmaStage<T, BM, BN, WARPS_M, THREADS> st{p};
  st.smem_a = reinterpret_cast<T*>(smem);
  st.smem_b = reinterpret_cast<T*>(smem + K::kSmemA);
  st.table.weights = reinterpret_cast<float4*>(smem + K::kSmemA + K::kSmemB);
  st.table.where = reinterpret_cast<ulonglong2*>(smem + K::kSmemA + K::kSmemB + kTableTaps * BM * 16);
  st.lane8 = tid % kLanesPerPixel;
  st.pixel0 = tid / kLanesPerPixel;
  st.lane = tid % 32;
  st.warp_m = (tid / 32) % WARPS_M;
  st.warp_n = (tid / 32) / WARPS_M;
  st.n0 = tile_n_idx * BN;
  const float bias = tile_bias<T, BN>(p, st.n0);
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

  int k_begin, k_end;
  slice_steps(p, split, k_begin, k_end);
  if (DCN_IGEMM_PROBE != 2) k_loop<T>(p, st, st.table, BM, tile_m_idx, k_begin, k_end);

  wait_for_prepare();  // also for a slice without K steps
  if (p.split_k > 1) {
    float(&acc_flat)[K::kAcc] = *reinterpret_cast<float(*)[K::kAcc]>(&st.acc[0][0][0]);
    if (!split_k_reduce(acc_flat, p.partials, p.counters, blockIdx.x, split, p.split_k, &last_flag)) return;
  }

  store_tile<T, BM, BN, THREADS>(p, smem, tile_m_idx, st.n0, bias, [&](auto&& put) {
#pragma unroll
    for (int mt = 0; mt < K::MT; ++mt)
#pragma unroll
      for (int nt = 0; nt < K::NT; ++nt)
#pragma unroll
        for (int c = 0; c < 4; c += 2)
          put(st.warp_m * K::WM + mt * 16 + st.lane / 4 + (c / 2) * 8, st.warp_n * K::WN + nt * 8 + (st.lane % 4) * 2,
              st.acc[mt][nt][c], st.acc[mt][nt][c + 1]);
  });
#endif
}


// ---------------------------------------------------------------------------------------
// Kernel 2b: Hopper warpgroup MMA (wgmma), every type. Built only where the build targets
// sm_90a (DCN_IGEMM_WGMMA, set by dcn_ext's setup.py and trt_plugin's CMake for that
// target); elsewhere the mma.sync kernel serves.
//
// Why: with mma.sync every warp reloads its A and B fragments from shared memory through
// the load/store pipe (ldmatrix), so a block moved about 100 KB per K step through L1 and
// the K loop was bound by that pipe (bench/NOTES.md). wgmma reads both tiles straight from
// shared memory, once per warpgroup: a block's two warpgroups either split the pixels
// (BM = 128, each 64 x BN) or the output channels (BM = 64, each 64 x BN/2). The gathers,
// the corner table and the blend are the mma.sync kernel's, and so is the K loop: while the
// tensor cores multiply step i, the threads blend step i + 1 into the next A buffer.
//
// fp32 (3xTF32) takes the same path: a K step's 32 fp32 channels are also a 128-byte row,
// and wgmma's k8 TF32 instruction reads 32 bytes of each row like the 16-bit k16 one, so
// tiles, swizzle and descriptors are shared; A and B each get a second tile for their
// small TF32 parts. On mma.sync, fp32 moved four fragment sets per step through ldmatrix
// and ran the three products synchronously: wgmma made the fp32 layers 1.1-1.8x faster.
//
// Shared-memory tiles are 128-byte rows (one K step of a pixel or an output channel) in
// the 128-byte swizzle that wgmma's K-major descriptors describe: the 16-byte chunk j of
// row r sits at chunk j ^ (r % 8), so eight lanes storing one row hit all 32 banks.
#if defined(DCN_IGEMM_WGMMA)
#define DCN_IGEMM_WGMMA_TILES(X) \
  X(k64x64wg, 64, 64)            \
  X(k128x64wg, 128, 64)          \
  X(k64x128wg, 64, 128)          \
  X(k128x128wg, 128, 128)        \
  X(k64x256wg, 64, 256)
// Warp-specialised tiles (kernel 2c): NAME, BM, BN, producer warpgroups. Three producers:
// two were slower in 24 of 28 (shape, tile) pairs of the 14 DLA-34 shapes at batch 1, each
// at its best split (fp16, sixth-session sweep). The 128-row tile has two: its producers
// hold eight pixels' corners each (168 registers a thread, no spills; three producers would
// have 128).
#define DCN_IGEMM_WS_TILES(X) \
  X(k64x64ws, 64, 64, 3)      \
  X(k64x128ws, 64, 128, 3)    \
  X(k32x64ws, 32, 64, 3)      \
  X(k32x128ws, 32, 128, 3)    \
  X(k128x64ws, 128, 64, 2)    \
  X(k64x256ws, 64, 256, 2)    \
  X(k32x256ws, 32, 256, 2)
#else
#define DCN_IGEMM_WGMMA_TILES(X)
#define DCN_IGEMM_WS_TILES(X)
#endif

#if defined(__CUDA_ARCH__) && defined(__CUDA_ARCH_FEAT_SM90_ALL)
#define DCN_IGEMM_WGMMA_DEVICE 1
#endif

constexpr int kSwizzleRow = 128;  // bytes of one swizzled row (= kChunkBytes)
// The most dynamic shared memory a block may ask for on sm_90: a wgmma tile above it (fp32's
// 64x256, with big and small parts of A and B) is never built.
constexpr int kMaxSmemPerBlock = 227 * 1024;

__device__ __forceinline__ int swizzled(int row, int chunk16) {
  return row * kSwizzleRow + ((chunk16 ^ (row & 7)) << 4);
}

// K-major operand descriptor, 128-byte swizzle: start address, stride between 8-row groups
// (1024 bytes), layout type 1; the leading offset is unused for this layout. Only the low
// word varies (the start address / 16, which tile and k16 offsets add to): the kernels keep
// that word, and Wgmma::run ORs in the fixed high word (stride 1024 >> 4 in bits 32-45,
// layout 1 in bits 62-63), so that no 64-bit arithmetic runs per product.
#define DCN_WGMMA_DESCRIPTOR_HIGH "0x4000004000000000"
__device__ __forceinline__ uint32_t wgmma_descriptor(const void* smem) {
  const uint32_t a = (uint32_t)__cvta_generic_to_shared(smem);
  return (a & 0x3FFFF) >> 4;
}

template <typename T, int N>
struct Wgmma;  // D[64 x N] += A[64 x K] * B[K x N] for 32 bytes of K (k16 16-bit, k8 TF32),
               // both operands K-major in shared memory

#define DCN_WGMMA_ACC8(i) "+f"(d[i + 0]), "+f"(d[i + 1]), "+f"(d[i + 2]), "+f"(d[i + 3]), \
                          "+f"(d[i + 4]), "+f"(d[i + 5]), "+f"(d[i + 6]), "+f"(d[i + 7])
// Operands: the accumulators (%0 .. %ACC-1), then the low words of the A and B descriptors
// and the scale-d flag (1: D += A * B). KIND is the instruction's K and types; IMM its scale
// (and, for 16-bit types, transpose) immediates: TF32 takes no transpose flags (K-major only).
#define DCN_WGMMA_DEFINE(TYPE, KIND, IMM, N, REGS, A, B, SCALE, ...)                                 \
  template <>                                                                                       \
  struct Wgmma<TYPE, N> {                                                                           \
    static __device__ __forceinline__ void run(float* d, uint32_t a, uint32_t b) {                 \
      asm volatile("{\n.reg .pred accumulate;\n.reg .b64 da, db;\n"                                  \
                   "setp.ne.b32 accumulate, %" SCALE ", 0;\n"                                       \
                   "cvt.u64.u32 da, %" A ";\nor.b64 da, da, " DCN_WGMMA_DESCRIPTOR_HIGH ";\n"       \
                   "cvt.u64.u32 db, %" B ";\nor.b64 db, db, " DCN_WGMMA_DESCRIPTOR_HIGH ";\n"       \
                   "wgmma.mma_async.sync.aligned.m64n" #N KIND " " REGS                             \
                   ", da, db, accumulate, " IMM ";\n}\n"                                           \
                   : __VA_ARGS__                                                                    \
                   : "r"(a), "r"(b), "r"(1));                                                      \
    }                                                                                               \
  };
#define DCN_WGMMA_REGS16 "{%0,%1,%2,%3,%4,%5,%6,%7,%8,%9,%10,%11,%12,%13,%14,%15}"
#define DCN_WGMMA_REGS32                                                                          \
  "{%0,%1,%2,%3,%4,%5,%6,%7,%8,%9,%10,%11,%12,%13,%14,%15,%16,%17,%18,%19,%20,%21,%22,%23,%24," \
  "%25,%26,%27,%28,%29,%30,%31}"
#define DCN_WGMMA_REGS64                                                                          \
  "{%0,%1,%2,%3,%4,%5,%6,%7,%8,%9,%10,%11,%12,%13,%14,%15,%16,%17,%18,%19,%20,%21,%22,%23,%24," \
  "%25,%26,%27,%28,%29,%30,%31,%32,%33,%34,%35,%36,%37,%38,%39,%40,%41,%42,%43,%44,%45,%46,%47," \
  "%48,%49,%50,%51,%52,%53,%54,%55,%56,%57,%58,%59,%60,%61,%62,%63}"
#define DCN_WGMMA_ALL(TYPE, KIND, IMM)                                                                   \
  DCN_WGMMA_DEFINE(TYPE, KIND, IMM, 32, DCN_WGMMA_REGS16, "16", "17", "18", DCN_WGMMA_ACC8(0),       \
                   DCN_WGMMA_ACC8(8))                                                                   \
  DCN_WGMMA_DEFINE(TYPE, KIND, IMM, 64, DCN_WGMMA_REGS32, "32", "33", "34", DCN_WGMMA_ACC8(0),       \
                   DCN_WGMMA_ACC8(8), DCN_WGMMA_ACC8(16), DCN_WGMMA_ACC8(24))                          \
  DCN_WGMMA_DEFINE(TYPE, KIND, IMM, 128, DCN_WGMMA_REGS64, "64", "65", "66", DCN_WGMMA_ACC8(0),      \
                   DCN_WGMMA_ACC8(8),                                                                   \
                   DCN_WGMMA_ACC8(16), DCN_WGMMA_ACC8(24), DCN_WGMMA_ACC8(32), DCN_WGMMA_ACC8(40),     \
                   DCN_WGMMA_ACC8(48), DCN_WGMMA_ACC8(56))
#if defined(DCN_IGEMM_WGMMA_DEVICE)
DCN_WGMMA_ALL(__half, "k16.f32.f16.f16", "1, 1, 0, 0")
DCN_WGMMA_ALL(__nv_bfloat16, "k16.f32.bf16.bf16", "1, 1, 0, 0")
DCN_WGMMA_ALL(float, "k8.f32.tf32.tf32", "1, 1")
#endif
#undef DCN_WGMMA_ALL
#undef DCN_WGMMA_DEFINE
#undef DCN_WGMMA_ACC8
#undef DCN_WGMMA_REGS16
#undef DCN_WGMMA_REGS32
#undef DCN_WGMMA_REGS64
#undef DCN_WGMMA_DESCRIPTOR_HIGH

// One K step of a warpgroup's product from swizzled tiles (descriptors a, b): 32 bytes of
// each row per instruction. 3xTF32 (kParts 2; the small parts kASmall / kBSmall bytes after
// the big ones) in the mma.sync kernel's order: the small products first, so that they are
// not lost against the big one. Every wgmma kernel multiplies through here: same products
// in the same order, hence the same bits at the same split.
template <typename T, int N, int kParts, int kASmall, int kBSmall>
__device__ __forceinline__ void wgmma_k_step(float* acc, uint32_t a, uint32_t b) {
#pragma unroll
  for (int kk = 0; kk < kSwizzleRow / 32; ++kk) {
    const uint32_t step = (uint32_t)(kk * 32 / 16);  // descriptor addresses count 16 bytes
    if constexpr (kParts == 2) {
      Wgmma<T, N>::run(acc, a + kASmall / 16 + step, b + step);
      Wgmma<T, N>::run(acc, a + step, b + kBSmall / 16 + step);
    }
    Wgmma<T, N>::run(acc, a + step, b + step);
  }
}

// The wgmma kernels start their tiles on the dynamic shared memory's first 1024-byte
// boundary (the 128-byte swizzle repeats every 1024 bytes) and reserve this much for it.
constexpr int kAlignSlack = 1024;

template <typename T, int BM, int BN>
struct WgmmaShape {
  static constexpr int kThreads = 256;                // two warpgroups
  static constexpr int kGroupsM = BM / 64;            // warpgroups along the pixels (1 or 2)
  static constexpr int kGroupN = BN * kGroupsM / 2;   // output channels of one warpgroup
  static constexpr int kAcc = kGroupN / 2;            // fp32 accumulators per thread
  static constexpr int kChunk = Traits<T>::kChunk;    // 64 channels per K step (fp32: 32)
  // fp32 (3xTF32): every A and B tile has a big and a small part, each its own swizzled
  // tile, so that wgmma reads either through a descriptor.
  static constexpr int kParts = Traits<T>::kTf32x3 ? 2 : 1;
  static constexpr int kPixelsPerPass = kThreads / kLanesPerPixel;
  static constexpr int PPT = BM / kPixelsPerPass;
  static constexpr int BPT = BN * kLanesPerPixel / kThreads;
  static constexpr int kDepth = PPT <= 2 ? 2 : 1;
  static constexpr int kATile = (kDepth + 1) * BM * kSwizzleRow;  // bytes of one part's buffers
  static constexpr int kBTile = (kDepth + 1) * BN * kSwizzleRow;
  static constexpr int kSmemA = kParts * kATile;
  static constexpr int kSmemB = kParts * kBTile;
  static constexpr int kSmemTable = kTableTaps * BM * kTableEntryBytes;
  static constexpr int kSmem = kSmemA + kSmemB + kSmemTable + kAlignSlack;
  static_assert(BM == 64 || BM == 128, "tile");
  static_assert(kGroupN == 32 || kGroupN == 64 || kGroupN == 128, "wgmma N");
  static_assert(BN * (BM + 8) * (int)sizeof(T) <= kSmemA + kSmemB &&
                    BM * (BN + 8) * (int)sizeof(T) <= kSmemA + kSmemB,
                "epilogue staging fits");
};

template <typename T, int BM, int BN>
struct WgmmaStage {
  using K = WgmmaShape<T, BM, BN>;
  const GemmParams<T>& p;
  char* smem_a;  // [kDepth + 1][BM rows of 128 bytes], swizzled
  char* smem_b;  // [kDepth + 1][BN rows of 128 bytes], swizzled
  CornerTable table;
  int q_lo;
  int lane8, pixel0;
  int group_m, group_n;  // this warpgroup's pixel and output-channel block
  size_t k_total;
  static constexpr int kDepth = K::kDepth;
  static constexpr int kTableStride = K::kThreads / BM;
  uint4 vals[K::kDepth][K::PPT][4];
  float acc[K::kAcc];
  const T* b_src;
  int b_row;  // this thread's first B row (output channel) within the tile
  uint32_t desc_a, desc_b;  // descriptors of this warpgroup's rows of A and B buffer 0

  template <int R>
  __device__ __forceinline__ void load(int kpos, int q, int chunk, int buf) {
    gather_pixels<T, K::PPT, K::kPixelsPerPass>(table.where + 2 * ((q - q_lo) * BM + pixel0),
                                                 chunk * K::kChunk + lane8 * Traits<T>::kVec, vals[R]);
    const T* src = b_src + (size_t)kpos * K::kChunk;
    char* dst = smem_b + buf * BN * kSwizzleRow;
#pragma unroll
    for (int part = 0; part < K::kParts; ++part)  // fp32: the small parts follow the big ones
#pragma unroll
      for (int j = 0; j < K::BPT; ++j)
        cp_async16(dst + part * K::kBTile + swizzled(b_row + j * K::kPixelsPerPass, lane8),
                   src + part * (size_t)p.s.cout_pad * k_total + j * K::kPixelsPerPass * k_total);
    cp_async_commit();
  }
  template <int R>
  __device__ __forceinline__ void store(int buf, int q) {
#pragma unroll
    for (int j = 0; j < K::PPT; ++j) {
      const int pl = pixel0 + j * K::kPixelsPerPass;
      const uint4 packed = blend_vector<T>(vals[R][j], table.weights[(q - q_lo) * BM + pl]);
      char* dst = smem_a + buf * BM * kSwizzleRow + swizzled(pl, lane8);
      if constexpr (K::kParts == 2) {
        store_split_tf32(packed, dst, K::kATile);
      } else {
        *reinterpret_cast<uint4*>(dst) = packed;
      }
    }
  }
  __device__ __forceinline__ void compute(int buf) {
#if defined(DCN_IGEMM_WGMMA_DEVICE)
    // A descriptor's low bits are the address / 16: a tile or k16 offset adds to it directly.
    const uint32_t a = desc_a + (uint32_t)(buf * BM * kSwizzleRow / 16);
    const uint32_t b = desc_b + (uint32_t)(buf * BN * kSwizzleRow / 16);
#pragma unroll
    for (int i = 0; i < K::kAcc; ++i) asm volatile("" : "+f"(acc[i])::"memory");
    asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory");
    wgmma_k_step<T, K::kGroupN, K::kParts, K::kATile, K::kBTile>(acc, a, b);
    asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory");
#endif
  }
  __device__ __forceinline__ void retire() {
#if defined(DCN_IGEMM_WGMMA_DEVICE)
    asm volatile("wgmma.wait_group.sync.aligned 0;\n" ::: "memory");
#pragma unroll
    for (int i = 0; i < K::kAcc; ++i) asm volatile("" : "+f"(acc[i])::"memory");
#endif
  }
  __device__ __forceinline__ void publish() {
#if defined(DCN_IGEMM_WGMMA_DEVICE)
    asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
#endif
  }
};

// fp32 tiles carry big and small parts of A and B: one block per SM even at 64x64.
template <typename T, int BM, int BN>
struct WgmmaMinBlocks {
  static constexpr int value = Traits<T>::kTf32x3 || BM * BN >= 128 * 128 ? 1 : 2;
};

template <typename T, int BM, int BN>
__global__ void __launch_bounds__(256, WgmmaMinBlocks<T, BM, BN>::value) igemm_wgmma_kernel(GemmParams<T> p) {
#if defined(DCN_IGEMM_WGMMA_DEVICE)
  if (DCN_IGEMM_PROBE == 1) return;
  using K = WgmmaShape<T, BM, BN>;
  extern __shared__ uint4 smem_dyn[];
  __shared__ int last_flag;
  // Aligned by pointer arithmetic on the shared array, not through an integer: the compiler
  // then still knows every table and tile access is to shared memory (LDS/STS; through an
  // integer round trip they became generic loads and stores with 64-bit addresses). A helper
  // function returning the pointer changed the kernels' code as well.
  const uint32_t base = (uint32_t)__cvta_generic_to_shared(smem_dyn);
  char* smem = reinterpret_cast<char*>(smem_dyn) + ((kAlignSlack - base % kAlignSlack) % kAlignSlack);
  const Shape& s = p.s;
  const int tid = threadIdx.x;
  const int tile_n_idx = p.by_tiles_m.div(blockIdx.x), tile_m_idx = blockIdx.x - tile_n_idx * p.tiles_m;
  const int split = blockIdx.y;
  // The warpgroup, broadcast from lane 0 so that the compiler knows it is the same in every
  // lane: the descriptor and step arithmetic then runs in uniform registers (16-bit types;
  // fp32's three products per 32 bytes ran 6 % slower on 64x128wg so, bench/NOTES.md v19).
  const int group = Traits<T>::kTf32x3 ? tid / 128 : __shfl_sync(0xffffffffu, tid / 128, 0);
  // Launched early (16-bit types only: fp32's 64x64wg ran 5 % slower with this wait in it,
  // bench/NOTES.md v19): wait for the previous kernel before any global access.
  if (!Traits<T>::kTf32x3 && p.early_launch) wait_for_prepare();

  WgmmaStage<T, BM, BN> st{p};
  st.smem_a = smem;
  st.smem_b = smem + K::kSmemA;
  st.table.weights = reinterpret_cast<float4*>(smem + K::kSmemA + K::kSmemB);
  st.table.where = reinterpret_cast<ulonglong2*>(smem + K::kSmemA + K::kSmemB + kTableTaps * BM * 16);
  st.lane8 = tid % kLanesPerPixel;
  st.pixel0 = tid / kLanesPerPixel;
  st.group_m = K::kGroupsM == 2 ? group : 0;
  st.group_n = K::kGroupsM == 2 ? 0 : group;
  st.desc_a = wgmma_descriptor(st.smem_a + st.group_m * 64 * kSwizzleRow);
  st.desc_b = wgmma_descriptor(st.smem_b + st.group_n * K::kGroupN * kSwizzleRow);
  st.k_total = (size_t)s.k_steps * K::kChunk;
  const int n0 = tile_n_idx * BN;
  const float bias = tile_bias<T, BN>(p, n0);
  st.b_row = tid / kLanesPerPixel;
  st.b_src = p.weight_packed + (size_t)(n0 + st.b_row) * st.k_total + st.lane8 * Traits<T>::kVec;
#pragma unroll
  for (int a = 0; a < K::kAcc; ++a) st.acc[a] = 0.f;

  int k_begin, k_end;
  slice_steps(p, split, k_begin, k_end);
  if (DCN_IGEMM_PROBE != 2) k_loop<T>(p, st, st.table, BM, tile_m_idx, k_begin, k_end);

  wait_for_prepare();
  if (p.split_k > 1) {
    if (!split_k_reduce(st.acc, p.partials, p.counters, blockIdx.x, split, p.split_k, &last_flag)) return;
  }
  // Accumulator i of a thread: row 16 * warp + lane / 4 + 8 * ((i / 2) % 2) of the warpgroup's
  // 64, column 8 * (i / 4) + 2 * (lane % 4) + i % 2 of its kGroupN (the m16n8 layout per 8 columns).
  const int warp = (tid / 32) % 4, lane = tid % 32;
  store_tile<T, BM, BN, 256>(p, smem, tile_m_idx, n0, bias, [&](auto&& put) {
#pragma unroll
    for (int i = 0; i < K::kAcc; i += 2)
      put(st.group_m * 64 + warp * 16 + lane / 4 + 8 * ((i / 2) % 2),
          st.group_n * K::kGroupN + 8 * (i / 4) + 2 * (lane % 4), st.acc[i], st.acc[i + 1]);
  });
#elif defined(__CUDA_ARCH__)
  __trap();  // never launched: the host picks wgmma tiles only for sm_90a builds on sm_90
#endif
}

// ---------------------------------------------------------------------------------------
// Kernel 2c: warp-specialised wgmma (sm_90a builds), the design bench/NOTES.md asked for.
//
// Why: in the kernels above every K step is one chain closed by a block-wide barrier
// (gathers land, blend, store A, barrier, product), so all warps of a block wait on the
// same gathers at the same time and a step takes about 1 us however few instructions it
// has. Here the block's warpgroups take roles. Warpgroup 0 only multiplies: it waits for a
// stage of the shared-memory ring to be full, runs wgmma on it and frees it. The other P
// warpgroups (producers) each fill whole stages, taking the steps P apart: a producer
// waits for its stage to be free, copies the step's weights (a bulk copy), gathers and blends
// the step's A tile, and signals the stage full on an mbarrier. P steps are gathered at
// once, each producer at its own point of the chain, and no barrier joins them.
//
// The corner table is filled once per block by all threads (one fill: 3x3 kernels with
// one deformable group, valid_config), the steps run in the order of the other kernels
// (chunk-major without split-K, tap-major slices with it), and the split-K reduction and
// epilogue are theirs, run by the whole block with the consumer's accumulators; same
// products in the same order, so the same bits as the other wgmma tiles at the same split.
// Blocks of 32 rows (k32x64ws, k32x128ws) let a layer with 64 tiles of 64 rows fill the
// SMs without splitting K (choose_config). Blocks of 128 rows (k128x64ws, fp32 only) run
// two m64 products a step on one B tile, with two producer warpgroups. Blocks of 256
// outputs (k64x256ws, k32x256ws; 16-bit types only) gather each pixel once for all of them
// and run two n128 products a step, also with two producer warpgroups: with a third, 512
// threads would leave 128 registers a thread and the consumer's 128 accumulators would spill.
template <typename T, int BM, int BN, int P>
struct WsShape {
  static constexpr int kProducers = P;                // producer warpgroups
  static constexpr int kThreads = 128 * (1 + P);
  // BM 128: the consumer runs two m64 products a step (rows 0-63, 64-127) on one B tile.
  static constexpr int kMTiles = BM == 128 ? 2 : 1;
  // BN 256: two n128 products a step, on the B tile's two halves (their accumulators side
  // by side are an n256 product's: the same layout for the split-K and epilogue code).
  static constexpr int kNTiles = BN == 256 ? 2 : 1;
  static constexpr int kWgmmaN = BN / kNTiles;
  static constexpr int kAcc = kMTiles * BN / 2;       // the consumer's accumulators per thread
  static constexpr int kChunk = Traits<T>::kChunk;
  static constexpr int kParts = Traits<T>::kTf32x3 ? 2 : 1;
  static constexpr int kPixelsPerPass = 128 / kLanesPerPixel;  // a producer warpgroup's pixels per pass
  static constexpr int PPT = BM / kPixelsPerPass;
  static constexpr int BPT = BN / kPixelsPerPass;     // weight rows per producer thread
  static constexpr int kAPart = BM * kSwizzleRow;     // one swizzled tile (1024-byte multiple)
  static constexpr int kBPart = BN * kSwizzleRow;
  static constexpr int kStageBytes = kParts * (kAPart + kBPart);  // A parts, then B parts
  static constexpr int kSmemTable = kTableTaps * BM * kTableEntryBytes;
  static constexpr int kMaxStages = 6;
  static constexpr int kFit = (kMaxSmemPerBlock - kSmemTable - kAlignSlack - 1024) / kStageBytes;
  static constexpr int kStages = kFit < kMaxStages ? kFit : kMaxStages;
  static constexpr int kSmem = kStages * kStageBytes + kSmemTable + kAlignSlack;
  // BM 32: the consumer's m64 products read 32 more rows past the A tile (the stage's next
  // part, always in bounds); their results land in consumer warps 2 and 3, which store
  // nothing (kHolders).
  static_assert(BM == 128 || BM == 64 || BM == 32, "one consumer warpgroup: 128 pixels, 64 or 32");
  static constexpr int kHolders = BM == 32 ? 64 : 128;  // consumer threads whose rows are real
  // The 128-row tile is built for fp32 only: in 16-bit types it lost to the register-A and
  // wgmma tiles on every layer (sixteenth session, bench/NOTES.md v29).
  // The 256-output tiles are built for 16-bit types only: fp32's big and small parts leave
  // their rings two stages (64 rows), fewer than two producers need, or three (32 rows),
  // and no fp32 layer was measured on them.
  static constexpr bool kBuilt = (BM != 128 || Traits<T>::kTf32x3) && (BN != 256 || !Traits<T>::kTf32x3);
  static_assert(BN == 64 || BN == 128 || (BN == 256 && BM <= 64), "wgmma N");
  static_assert(kStages >= 2, "ring");
  static_assert(BN * (BM + 8) * (int)sizeof(T) <= kStages * kStageBytes &&
                    BM * (BN + 8) * (int)sizeof(T) <= kStages * kStageBytes,
                "epilogue staging fits");
};

__device__ __forceinline__ uint32_t smem_address(const void* p) { return (uint32_t)__cvta_generic_to_shared(p); }
__device__ __forceinline__ void mbarrier_init(uint64_t* bar, int count) {
  asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;\n" ::"r"(smem_address(bar)), "r"(count) : "memory");
}
__device__ __forceinline__ void mbarrier_arrive(uint64_t* bar) {
  asm volatile("mbarrier.arrive.release.cta.shared::cta.b64 _, [%0];\n" ::"r"(smem_address(bar)) : "memory");
}
// Returns once the barrier's phase of this parity has completed (acquire).
__device__ __forceinline__ void mbarrier_wait(uint64_t* bar, uint32_t parity) {
  asm volatile(
      "{\n.reg .pred done;\nWAIT:\n"
      "mbarrier.try_wait.parity.shared::cta.b64 done, [%0], %1;\n"
      "@!done bra WAIT;\n}\n" ::"r"(smem_address(bar)),
      "r"(parity)
      : "memory");
}

template <typename T, int BM, int BN, int P>
__global__ void __launch_bounds__(WsShape<T, BM, BN, P>::kThreads, 1) igemm_ws_kernel(GemmParams<T> p) {
#if defined(DCN_IGEMM_WGMMA_DEVICE)
  if (DCN_IGEMM_PROBE == 1) return;
  using K = WsShape<T, BM, BN, P>;
  constexpr int S = K::kStages;
  extern __shared__ uint4 smem_dyn[];
  __shared__ int last_flag;
  __shared__ uint64_t full[S], empty[S];  // per stage: filled by a producer / freed by the consumer
  const uint32_t base = smem_address(smem_dyn);  // aligned as in igemm_wgmma_kernel
  char* smem = reinterpret_cast<char*>(smem_dyn) + ((kAlignSlack - base % kAlignSlack) % kAlignSlack);
  const Shape& s = p.s;
  const int tid = threadIdx.x;
  const int tile_n_idx = p.by_tiles_m.div(blockIdx.x), tile_m_idx = blockIdx.x - tile_n_idx * p.tiles_m;
  const int split = blockIdx.y;
  const int n0 = tile_n_idx * BN;
  if (p.early_launch) wait_for_prepare();  // the launch overlapped the previous kernel's tail
  const float bias = tile_bias<T, BN>(p, n0);
  CornerTable table;
  table.weights = reinterpret_cast<float4*>(smem + S * K::kStageBytes);
  table.where = reinterpret_cast<ulonglong2*>(smem + S * K::kStageBytes + kTableTaps * BM * 16);
  int k_begin, k_end;
  slice_steps(p, split, k_begin, k_end);
  const int cpq = s.chunks_per_q, taps = s.taps, per_group = cpq * taps;
  const bool chunk_major = p.split_k == 1;
  // The table's (group, tap) pairs: all of them without split-K, the slice's with it.
  const int q_lo = chunk_major ? 0 : p.by_cpq.div(k_begin);
  const int nq = DCN_IGEMM_PROBE == 2 ? 0 : chunk_major ? s.dg * taps : (k_end > k_begin ? p.by_cpq.div(k_end - 1) - q_lo + 1 : 0);
  const int steps = DCN_IGEMM_PROBE >= 2 ? 0 : k_end - k_begin;
  if (tid == 0) {
    for (int i = 0; i < S; ++i) {
      mbarrier_init(&full[i], 5);   // the four warps of one producer warpgroup, and its weight copy
      mbarrier_init(&empty[i], 4);  // the four consumer warps
    }
  }
  if (nq > 0) fill_corner_table<T, K::kThreads / BM>(p, table, BM, tile_m_idx, q_lo, nq);
  wait_for_prepare();
  __syncthreads();

  // Set by the consumer only: left undefined in the producers, it takes no registers there.
  float acc[K::kAcc];
  const int lane = tid % 32;
  // The warpgroup's role, broadcast from lane 0 so that the compiler knows it is the same
  // in every lane (as CUTLASS does): the consumer's descriptor arithmetic can then stay
  // in uniform registers.
  const int role = __shfl_sync(0xffffffffu, tid / 128, 0);
  if (role == 0) {
#pragma unroll
    for (int a = 0; a < K::kAcc; ++a) acc[a] = 0.f;
    // Consumer: the product of stage i overlaps the wait for stage i + 1; stage i is freed
    // once the product of stage i + 1 has been issued and that of i has finished.
    const uint32_t desc_a = wgmma_descriptor(smem);
    const uint32_t desc_b = wgmma_descriptor(smem + K::kParts * K::kAPart);
    // Stage and phase advance as counters (S need not be a power of two).
    int stage = 0, previous = S - 1;
    uint32_t phase = 0, offset = 0;  // offset: the stage's descriptor offset (16-byte units)
    for (int i = 0; i < steps; ++i) {
      mbarrier_wait(&full[stage], phase);
#pragma unroll
      for (int r = 0; r < K::kAcc; ++r) asm volatile("" : "+f"(acc[r])::"memory");
      asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory");
#pragma unroll
      for (int mt = 0; mt < K::kMTiles; ++mt)  // rows 64 mt .. 64 mt + 63: 64 swizzled rows further
#pragma unroll
        for (int nt = 0; nt < K::kNTiles; ++nt)  // outputs kWgmmaN nt ..: kWgmmaN swizzled rows further
          wgmma_k_step<T, K::kWgmmaN, K::kParts, K::kAPart, K::kBPart>(
              acc + mt * (BN / 2) + nt * (K::kWgmmaN / 2), desc_a + offset + mt * (64 * kSwizzleRow / 16),
              desc_b + offset + nt * (K::kWgmmaN * kSwizzleRow / 16));
      asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory");
      asm volatile("wgmma.wait_group.sync.aligned 1;\n" ::: "memory");
      if (i > 0 && lane == 0) mbarrier_arrive(&empty[previous]);
      previous = stage;
      offset += K::kStageBytes / 16;
      if (++stage == S) {
        stage = 0;
        offset = 0;
        phase ^= 1u;
      }
    }
    asm volatile("wgmma.wait_group.sync.aligned 0;\n" ::: "memory");
#pragma unroll
    for (int r = 0; r < K::kAcc; ++r) asm volatile("" : "+f"(acc[r])::"memory");
  } else {
    // Producer warpgroup `group` fills the stages of steps group, group + P, ...
    const int group = role - 1, t = tid % 128;
    const int lane8 = t % kLanesPerPixel, pixel0 = t / kLanesPerPixel;
    const int element = lane8 * Traits<T>::kVec;
    auto step_of = [&](int i, int& q, int& chunk) {  // (group and tap, channel chunk) of step i
      const int ks = k_begin + i;
      if (chunk_major) {
        const int g = p.by_per_group.div(ks), r = ks - g * per_group;
        chunk = p.by_taps.div(r);
        q = g * taps + (r - chunk * taps);
      } else {
        q = p.by_cpq.div(ks);
        chunk = ks - q * cpq;
      }
    };
    // Waits until step i's stage is free and starts copying its weights.
    // A step's stage and the parity of its pass over the ring, advanced P steps at a time
    // (P < S: one pass at most) instead of divided out of the step index.
    struct Ring {
      int stage;
      uint32_t phase;
      __device__ __forceinline__ Ring ahead() const {
        return stage + P < S ? Ring{stage + P, phase} : Ring{stage + P - S, phase ^ 1u};
      }
    };
    static_assert(P < S, "a producer's steps are fewer than a ring apart");
    // The step's weights: one bulk copy of the B image (ws_image_index) per part and 64
    // outputs, by one thread, completing on the stage's full barrier (its fifth arrival
    // announces the bytes), so no producer waits for them.
    auto copy_weights = [&](Ring at, int q_i, int chunk_i) {
      mbarrier_wait(&empty[at.stage], at.phase ^ 1u);
      if (t == 0) {
        char* b_tile = smem + at.stage * K::kStageBytes + K::kParts * K::kAPart;
        const int ps = q_i * cpq + chunk_i;  // packed K order: tap-major
        constexpr int kCopyBytes = 64 * kSwizzleRow;
        const uint32_t bar = smem_address(&full[at.stage]);
        asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;\n" ::"r"(bar),
                     "r"(K::kParts * K::kBPart)
                     : "memory");
#pragma unroll
        for (int part = 0; part < K::kParts; ++part)
#pragma unroll
          for (int h = 0; h < BN / 64; ++h)
            asm volatile("cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1], %2, [%3];\n" ::"r"(
                             smem_address(b_tile + part * K::kBPart + h * kCopyBytes)),
                         "l"(p.weight_packed + ws_image_index<T>(s, part, n0 + 64 * h, ps, 0)), "r"(kCopyBytes),
                         "r"(bar)
                         : "memory");
      }
    };
    // A producer starts its next step's weight copy before it signals this step, so that
    // the copy's round trip leaves its chain. That waits for the next step's stage before
    // this step is full: the consumer must be able to free it without this step, i.e. the
    // stage's previous step (next - S) must come before this step's predecessor (S >= P + 2;
    // fp32's 64x128 ring has 4 stages and copies at the start of each step instead).
    constexpr bool kEarlyWeights = S >= P + 2;
    int q = 0, chunk = 0;
    uint4 v[K::PPT][4];
    Ring at{group, 0u};  // step group's place (group < P < S)
    if (group < steps) {
      step_of(group, q, chunk);
      if (kEarlyWeights) copy_weights(at, q, chunk);
      gather_pixels<T, K::PPT, K::kPixelsPerPass>(table.where + 2 * ((q - q_lo) * BM + pixel0),
                                                   chunk * K::kChunk + element, v);
    }
    for (int i = group; i < steps; i += P) {
      const int next = i + P;
      const Ring at_next = at.ahead();
      int q_next = 0, chunk_next = 0;
      if (next < steps) step_of(next, q_next, chunk_next);
      if (!kEarlyWeights) copy_weights(at, q, chunk);
      char* a_tile = smem + at.stage * K::kStageBytes;
      // Each pixel's registers, once blended, take its corners of step `next`: those gathers
      // are in flight for the rest of this step, the signal and the wait for the next stage
      // (the gathers' round trip, not the blend, is a producer's longest wait).
#pragma unroll
      for (int j = 0; j < K::PPT; ++j) {
        const int pl = pixel0 + j * K::kPixelsPerPass;
        const uint4 packed = blend_vector<T>(v[j], table.weights[(q - q_lo) * BM + pl]);
        char* dst = a_tile + swizzled(pl, lane8);
        if constexpr (K::kParts == 2) {
          store_split_tf32(packed, dst, K::kAPart);
        } else {
          *reinterpret_cast<uint4*>(dst) = packed;
        }
        if (next < steps) gather4<T>(table.where + 2 * ((q_next - q_lo) * BM + pl), chunk_next * K::kChunk + element, v[j]);
      }
      if (kEarlyWeights && next < steps) copy_weights(at_next, q_next, chunk_next);
      // Each thread's tile stores are made visible to the tensor cores' async proxy, then
      // its warp signals (release): the consumer's wait acquires all four warps' stores.
      asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
      __syncwarp();
      if (lane == 0) mbarrier_arrive(&full[at.stage]);
      at = at_next;
      q = q_next;
      chunk = chunk_next;
    }
  }
  __syncthreads();  // every stage consumed: the ring is free for the epilogue's staging
  if (p.split_k > 1) {
    if (p.shared_reduction) {
      split_k_shared<T, BM, BN, K::kHolders>(p, acc, bias, tile_m_idx, n0, split);
      return;
    }
    if (!split_k_reduce<K::kAcc, K::kHolders>(acc, p.partials, p.counters, blockIdx.x, split, p.split_k, &last_flag)) return;
  }
  const int warp = tid / 32;
  store_tile<T, BM, BN, K::kThreads>(p, smem, tile_m_idx, n0, bias, [&](auto&& put) {
    if (tid < K::kHolders) {  // the consumer's accumulators, in igemm_wgmma_kernel's layout
      constexpr int kPerM = BN / 2;  // per m64 product, rows 64 apart
#pragma unroll
      for (int i = 0; i < K::kAcc; i += 2) {
        const int mt = i / kPerM, j = i % kPerM;
        put(64 * mt + warp * 16 + lane / 4 + 8 * ((j / 2) % 2), 8 * (j / 4) + 2 * (lane % 4), acc[i], acc[i + 1]);
      }
    }
  });
#elif defined(__CUDA_ARCH__)
  __trap();  // never launched: the host picks these tiles only for sm_90a builds on sm_90
#endif
}

// ---------------------------------------------------------------------------------------
// Kernel 2d: register-A wgmma for 64-channel 3x3 layers (16-bit types, sm_90a builds,
// unsplit), the tile k128x64ra: 128 pixels x 64 output channels, two warpgroups of 64
// pixels each, all nine taps. bench/NOTES.md v20.
//
// Why: in the kernels above the blended A tile goes through shared memory (a store, a
// proxy fence, a barrier, and wgmma reading it back once per warpgroup); with 64 input
// channels the K loop is only nine steps and a block's fixed costs weigh as much. Here a
// thread blends its corners straight into wgmma's A fragment (two pixels, sixteen
// channels: ra_channel orders the weights to match), so a warp never waits for another:
// no barrier in the K loop. The whole 64 x 576 weight block stays in shared memory,
// brought in by bulk copies of its pre-swizzled image (packed with the weights). Each
// warp fills the corner table of its own sixteen pixels, two taps at a time, the later
// taps inside the K loop two steps ahead of their first use, so that the first gathers
// wait for one pass of the table arithmetic instead of five.
struct RaShape {
  static constexpr int kThreads = 256, BM = 128, BN = 64, kTaps = 9;
  static constexpr int kWarpTable = kTaps * 16 * kTableEntryBytes;  // [tap][16 pixels]: 16-byte weights, 32-byte corners
  static constexpr int kSmemB = kTaps * BN * kSwizzleRow;            // 72 KB: every tap's 64 x 64 weights
  static constexpr int kSmem = kSmemB + 8 * kWarpTable + kAlignSlack;
  static_assert(BM * (BN + 8) * 2 <= 8 * kWarpTable, "epilogue staging fits the tables");
};

// The weight block arrives as two bulk copies, taps [0, first) and [first, 9), each on its
// own barrier, waited for just before the first product that reads it: the first step's
// gathers and blend then overlap the copy, which with NCHW input starts only after the
// prepare kernel. The split is per type because it is what an H100 measured (64->64 at
// 128x128, batch 1, against one copy waited for before the K loop: fp16 11.75 -> 11.22 us
// channels-last, 15.1 -> 14.1 NCHW with tap 0 alone; bf16 14.05 -> 13.64 and 17.0 -> 15.7
// with one copy waited for after the first blend; bench/NOTES.md v21).
template <typename T>
struct RaWeightCopy {
  static constexpr int kFirstTaps = RaShape::kTaps;
};
template <>
struct RaWeightCopy<__half> {
  static constexpr int kFirstTaps = 1;
};

template <typename T>
struct WgmmaRa;  // D[64 x 64] += A[64 x 16] (registers) * B[16 x 64] (K-major shared memory)
#define DCN_WGMMA_RA_DEFINE(TYPE, KIND)                                                                  \
  template <>                                                                                           \
  struct WgmmaRa<TYPE> {                                                                                \
    static __device__ __forceinline__ void run(float* d, const uint32_t (&a)[4], uint32_t b) {         \
      asm volatile("{\n.reg .b64 db;\ncvt.u64.u32 db, %36;\nor.b64 db, db, 0x4000004000000000;\n"          \
                   "wgmma.mma_async.sync.aligned.m64n64" KIND " " DCN_WGMMA_RA_ACC                       \
                   ", {%32,%33,%34,%35}, db, 1, 1, 1, 0;\n}\n"                                         \
                   : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]),  \
                     "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), \
                     "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]),          \
                     "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]),          \
                     "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31])           \
                   : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b));                                 \
    }                                                                                                   \
  };
#define DCN_WGMMA_RA_ACC                                                                             \
  "{%0,%1,%2,%3,%4,%5,%6,%7,%8,%9,%10,%11,%12,%13,%14,%15,%16,%17,%18,%19,%20,%21,%22,%23,%24,%25," \
  "%26,%27,%28,%29,%30,%31}"
#if defined(DCN_IGEMM_WGMMA_DEVICE)
DCN_WGMMA_RA_DEFINE(__half, "k16.f32.f16.f16")
DCN_WGMMA_RA_DEFINE(__nv_bfloat16, "k16.f32.bf16.bf16")
#endif
#undef DCN_WGMMA_RA_DEFINE
#undef DCN_WGMMA_RA_ACC

// A thread's corners of one step: [pixel r0, r0 + 8][channels 16 t .., 16 t + 8 ..][corner].
struct RaGathered {
  uint4 v[2][2][4];
  float4 w[2];
};

// This warp's pixel (lane % 16) for the table: whether it is inside the output, its position.
struct RaPixel {
  bool inside;
  int n_img, pix, ho, wo;
};

// The four corners' addresses of the table entry at `row` ([tap][16 pixels]).
__device__ __forceinline__ void ra_corners(const char* table, int row, unsigned long long (&corner)[4]) {
  const ulonglong2* where = reinterpret_cast<const ulonglong2*>(table + RaShape::kTaps * 16 * 16) + 2 * row;
  const ulonglong2 a = where[0], b = where[1];
  corner[0] = a.x;
  corner[1] = a.y;
  corner[2] = b.x;
  corner[3] = b.y;
}

template <typename T>
__device__ __forceinline__ void ra_gather(const char* table, int tap, int r0, int t, RaGathered& g) {
#if DCN_RA_PROBE_COALESCED
  // Probe (wrong results): whole-line loads, eight lanes to a corner's line (pixel 4 q +
  // lane / 8, chunk lane % 8), blended as if they were the lane's own fragment data.
  const int lane = 4 * r0 + t;
#pragma unroll
  for (int r = 0; r < 2; ++r) g.w[r] = reinterpret_cast<const float4*>(table)[tap * 16 + r0 + 8 * r];
#pragma unroll
  for (int q = 0; q < 4; ++q) {
    unsigned long long corner[4];
    ra_corners(table, tap * 16 + 4 * q + lane / 8, corner);
#pragma unroll
    for (int c = 0; c < 4; ++c)
      g.v[q / 2][q % 2][c] = __ldg(reinterpret_cast<const uint4*>(reinterpret_cast<const T*>(corner[c]) + 8 * (lane % 8)));
  }
#else
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    const int row = tap * 16 + r0 + 8 * r;
    g.w[r] = reinterpret_cast<const float4*>(table)[row];
    unsigned long long corner[4];
    ra_corners(table, row, corner);
#pragma unroll
    for (int h = 0; h < 2; ++h)
#pragma unroll
      for (int c = 0; c < 4; ++c)
        g.v[r][h][c] = c < DCN_RA_PROBE_CORNERS
                           ? __ldg(reinterpret_cast<const uint4*>(reinterpret_cast<const T*>(corner[c]) + 16 * t + 8 * h))
                           : g.v[r][h][c % DCN_RA_PROBE_CORNERS];
  }
#endif
}

// Blends a step's corners into the four k16 fragments of wgmma's A operand.
template <typename T>
__device__ __forceinline__ void ra_blend(const RaGathered& g, uint32_t (&a)[4][4]) {
  uint4 blended[2][2];
#pragma unroll
  for (int r = 0; r < 2; ++r)
#pragma unroll
    for (int h = 0; h < 2; ++h) blended[r][h] = blend_vector<T>(g.v[r][h], g.w[r]);
#pragma unroll
  for (int j = 0; j < 4; ++j) {  // fragment j: channels 16 t + 4 j .. + 3 of rows r0 (regs 0, 2) and r0 + 8 (1, 3)
    const uint32_t* row0 = reinterpret_cast<const uint32_t*>(&blended[0][j / 2]);
    const uint32_t* row8 = reinterpret_cast<const uint32_t*>(&blended[1][j / 2]);
    a[j][0] = row0[2 * (j % 2)];
    a[j][1] = row8[2 * (j % 2)];
    a[j][2] = row0[2 * (j % 2) + 1];
    a[j][3] = row8[2 * (j % 2) + 1];
  }
}

// This lane's pixel's corner-table entry at `tap` (one deformable group), written at
// [tap][lane % 16] of the warp's table.
template <typename T>
__device__ __forceinline__ void ra_entry(const GemmParams<T>& p, const RaPixel& px, char* table, int tap, float dy,
                                         float dx, float m) {
  const Shape& s = p.s;
  const int i = tap / 3, j = tap - 3 * i;
  const float y = (float)(px.ho * s.stride_h - s.pad_h + i * s.dil_h) + dy;
  const float x = (float)(px.wo * s.stride_w - s.pad_w + j * s.dil_w) + dx;
  const int at = tap * 16 + (int)(threadIdx.x % 16);
  corner_entry(p, px.inside, y, x, m, px.n_img * s.height * s.width, 0, reinterpret_cast<float4*>(table)[at],
               reinterpret_cast<ulonglong2*>(table + RaShape::kTaps * 16 * 16) + 2 * at);
}

template <typename T>
__global__ void __launch_bounds__(RaShape::kThreads, 1) igemm_ra_kernel(GemmParams<T> p) {
#if defined(DCN_IGEMM_WGMMA_DEVICE)
  if (DCN_IGEMM_PROBE == 1) return;
  using K = RaShape;
  extern __shared__ uint4 smem_dyn[];
  // Copy c: taps [kCopyStart[c], kCopyStart[c + 1]) of the weights, on weights_full[c].
  constexpr int kCopyStart[] = {0, RaWeightCopy<T>::kFirstTaps, K::kTaps};
  constexpr int kCopies = RaWeightCopy<T>::kFirstTaps < K::kTaps ? 2 : 1;
  __shared__ uint64_t weights_full[kCopies];
  const uint32_t base = smem_address(smem_dyn);  // aligned as in igemm_wgmma_kernel
  char* smem = reinterpret_cast<char*>(smem_dyn) + ((kAlignSlack - base % kAlignSlack) % kAlignSlack);
  const Shape& s = p.s;
  const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32;
  const int tile_n_idx = p.by_tiles_m.div(blockIdx.x), tile_m_idx = blockIdx.x - tile_n_idx * p.tiles_m;
  const int n0 = tile_n_idx * K::BN;
  char* smem_b = smem;
  char* table = smem + K::kSmemB + warp * K::kWarpTable;
  const T* image = p.weight_packed + (size_t)s.cout_pad * s.k_steps * Traits<T>::kChunk +
                   (size_t)tile_n_idx * K::kTaps * K::BN * Traits<T>::kChunk;
  if (tid == 0) {
#pragma unroll
    for (int c = 0; c < kCopies; ++c) mbarrier_init(&weights_full[c], 1);
    asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
  }
  __syncthreads();
  // The tile's weights (RaWeightCopy), as soon as they may be read: at entry when launched
  // early (no prepare kernel), else after the prepare kernel (below).
  auto copy_weights = [&]() {
    if (tid == 0) {
      constexpr int kTapBytes = K::kSmemB / K::kTaps;
#pragma unroll
      for (int c = 0; c < kCopies; ++c) {
        const int bytes = (kCopyStart[c + 1] - kCopyStart[c]) * kTapBytes;
        asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;\n" ::"r"(smem_address(&weights_full[c])),
                     "r"(bytes)
                     : "memory");
        asm volatile("cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1], %2, [%3];\n" ::"r"(
                         smem_address(smem_b + kCopyStart[c] * kTapBytes)),
                     "l"(reinterpret_cast<const char*>(image) + kCopyStart[c] * kTapBytes), "r"(bytes),
                     "r"(smem_address(&weights_full[c]))
                     : "memory");
      }
    }
  };
  if (p.early_launch) {
    wait_for_prepare();
    copy_weights();
  }
  const int r0 = lane / 4, t = lane % 4;
  // Channels-last output with an even channel count: each warp stores its own rows from its
  // accumulators (pairs of columns 8 i + 2 t), with the bias of those columns kept from
  // here; whole 64-channel rows (staged) through the warp's own table area. A block holds an
  // SM alone, so a whole-block staged epilogue (two barriers) would keep the next block
  // waiting for the slowest warp (batch 8: 88 against 81 us).
  const bool direct = s.channels_last && s.cout % 2 == 0;
  uint32_t bias_pair[8];  // the two columns' bias in T, as loaded (registers are scarce here)
#pragma unroll
  for (int i = 0; i < 8; ++i) {
    const int col = n0 + 8 * i + 2 * t;
    bias_pair[i] = direct && p.bias != nullptr && col < s.cout ? *reinterpret_cast<const uint32_t*>(p.bias + col) : 0u;
  }
  const float bias = direct ? 0.f : tile_bias<T, K::BN>(p, n0);
  // The table: lane l keeps pixel l % 16 of the warp's sixteen and taps l / 16 + 2 j. All of
  // its offsets and mask values are loaded here, in one round trip (left alone, the compiler
  // issues the later taps' loads next to their use inside the K loop).
  RaPixel px;
  px.inside = locate_pixel(p, tile_m_idx, warp * 16 + lane % 16, K::BM, px.n_img, px.pix, px.ho, px.wo);
  const int plane = s.out_h * s.out_w;
  float dy[5], dx[5], mk[5];
#pragma unroll
  for (int j = 0; j < 5; ++j) {
    const int tap = lane / 16 + 2 * j;
    const bool live = px.inside && tap < K::kTaps;
    const size_t pair = (size_t)px.n_img * K::kTaps + tap;
    dy[j] = live ? to_float(p.offset[2 * pair * plane + px.pix]) : 0.f;
    dx[j] = live ? to_float(p.offset[(2 * pair + 1) * plane + px.pix]) : 0.f;
    mk[j] = live ? to_float(p.mask[pair * plane + px.pix]) : 0.f;
  }
#pragma unroll
  for (int j = 0; j < 5; ++j) asm volatile("" : "+f"(dy[j]), "+f"(dx[j]), "+f"(mk[j]));
  ra_entry(p, px, table, lane / 16, dy[0], dx[0], mk[0]);  // taps 0 and 1
  __syncwarp();
  if (!p.early_launch) {
    wait_for_prepare();  // the NHWC input and the weights' image come from the prepare kernel
    copy_weights();
  }
  RaGathered g[2];
  ra_gather<T>(table, 0, r0, t, g[0]);
  const uint32_t desc_b = wgmma_descriptor(smem_b);
  float acc[32];
#pragma unroll
  for (int i = 0; i < 32; ++i) acc[i] = 0.f;
  uint32_t a[2][4][4];
#pragma unroll
  for (int step = 0; step < DCN_RA_PROBE_STEPS; ++step) {
    if (step + 1 < DCN_RA_PROBE_STEPS) ra_gather<T>(table, step + 1, r0, t, g[(step + 1) % 2]);
    if (step % 2 == 0 && step + 2 < K::kTaps) {  // taps step + 2 and step + 3, first read in steps step + 1, step + 2
      const int j = step / 2 + 1, tap = lane / 16 + 2 * j;
      if (tap < K::kTaps) ra_entry(p, px, table, tap, dy[j], dx[j], mk[j]);
      __syncwarp();
    }
    ra_blend<T>(g[step % 2], a[DCN_RA_MMA_SYNC ? 0 : step % 2]);
#pragma unroll
    for (int c = 0; c < kCopies; ++c)
      if (kCopyStart[c] == step) mbarrier_wait(&weights_full[c], 0);  // the copy this step reads first
#if DCN_RA_MMA_SYNC
    // Probe: each warp multiplies its own 16 rows (mma.sync, B fragments by ldmatrix from the
    // swizzled image), so no warp waits for the other three of its warpgroup. A warp's A
    // fragment and accumulators are laid out as mma.sync m16n8k16's: n8 tile i in acc[4 i ..].
#pragma unroll
    for (int j = 0; j < 4; ++j)
#pragma unroll
      for (int np = 0; np < 4; ++np) {
        const int row = 8 * (2 * np + lane / 16) + lane % 8, chunk = 2 * j + (lane / 8) % 2;
        uint32_t b[4];
        ldmatrix_x4(b, smem_b + step * K::BN * kSwizzleRow + swizzled(row, chunk));
        mma16816<T>(*reinterpret_cast<float(*)[4]>(acc + 8 * np), a[0][j], b);
        mma16816<T>(*reinterpret_cast<float(*)[4]>(acc + 8 * np + 4), a[0][j], b + 2);
      }
#else
    asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory");
#pragma unroll
    for (int j = 0; j < 4; ++j)
      WgmmaRa<T>::run(acc, a[step % 2][j], desc_b + (uint32_t)((step * K::BN * kSwizzleRow + j * 32) / 16));
    asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory");
    // The product of step - 1 is done: its fragments may be overwritten next step.
    asm volatile("wgmma.wait_group.sync.aligned 1;\n" ::: "memory");
#endif
  }
#if !DCN_RA_MMA_SYNC
  asm volatile("wgmma.wait_group.sync.aligned 0;\n" ::: "memory");
#endif
  if (DCN_RA_PROBE_STEPS < K::kTaps) {  // no bulk copy may outlive the block
#pragma unroll
    for (int c = 0; c < kCopies; ++c) mbarrier_wait(&weights_full[c], 0);
  }
#pragma unroll
  for (int i = 0; i < 32; ++i) asm volatile("" : "+f"(acc[i])::"memory");
  // Accumulator i: row r0 + 8 * ((i / 2) % 2) of the warp's sixteen, column 8 * (i / 4) +
  // 2 t + i % 2 (the wgmma kernels' layout).
  if (direct && s.cout % 8 == 0 && s.cout - n0 >= K::BN && reinterpret_cast<uintptr_t>(p.output) % 16 == 0) {
    // The warp's 16 rows through its own table area (no other warp reads it; its own last
    // reads were before the last product): whole 128-byte rows leave in four 16-byte
    // stores a lane instead of sixteen 4-byte ones that each touch eight rows (64->64 at
    // 128x128, batch 1: fp16 11.2 -> 10.3 us, bf16 13.6 -> 12.1 us; bench/NOTES.md v24).
    constexpr int kRowBytes = K::BN * (int)sizeof(T) + 16;  // padded: the pair writes fall on 32 banks
    static_assert(16 * kRowBytes <= K::kWarpTable, "a warp's rows fit its table");
    char* stage = table;
    __syncwarp();
#pragma unroll
    for (int i = 0; i < 32; i += 2) {
      const T* b = reinterpret_cast<const T*>(&bias_pair[i / 4]);
      store_pair<T>(reinterpret_cast<T*>(stage + (r0 + 8 * ((i / 2) % 2)) * kRowBytes) + 8 * (i / 4) + 2 * t,
                    acc[i] + to_float(b[0]), acc[i + 1] + to_float(b[1]));
    }
    __syncwarp();
#pragma unroll
    for (int k = 0; k < 4; ++k) {
      const int row = lane / 8 + 4 * k, chunk = lane % 8;
      RaPixel out;
      if (!locate_pixel(p, tile_m_idx, warp * 16 + row, K::BM, out.n_img, out.pix, out.ho, out.wo)) continue;
      *reinterpret_cast<uint4*>(p.output + ((size_t)out.n_img * plane + out.pix) * s.cout + n0 + 8 * chunk) =
          *reinterpret_cast<const uint4*>(stage + row * kRowBytes + 16 * chunk);
    }
    return;
  }
  if (direct) {
#pragma unroll
    for (int half = 0; half < 2; ++half) {
      RaPixel out;
      if (!locate_pixel(p, tile_m_idx, warp * 16 + r0 + 8 * half, K::BM, out.n_img, out.pix, out.ho, out.wo)) continue;
      T* row = p.output + ((size_t)out.n_img * plane + out.pix) * s.cout + n0 + 2 * t;
#pragma unroll
      for (int i = 0; i < 8; ++i) {
        if (n0 + 8 * i + 2 * t >= s.cout) continue;
        const T* b = reinterpret_cast<const T*>(&bias_pair[i]);
        store_pair<T>(row + 8 * i, acc[4 * i + 2 * half] + to_float(b[0]), acc[4 * i + 2 * half + 1] + to_float(b[1]));
      }
    }
    return;
  }
  // store_tile's first barrier orders every warp's last table read before the staging
  // that overwrites the tables.
  store_tile<T, K::BM, K::BN, K::kThreads>(p, smem + K::kSmemB, tile_m_idx, n0, bias, [&](auto&& put) {
#pragma unroll
    for (int i = 0; i < 32; i += 2) put(warp * 16 + r0 + 8 * ((i / 2) % 2), 8 * (i / 4) + 2 * t, acc[i], acc[i + 1]);
  });
#elif defined(__CUDA_ARCH__)
  __trap();  // never launched: the host picks this tile only for sm_90a builds on sm_90
#endif
}

// ---------------------------------------------------------------------------------------
// Host side.
inline int device_sm_count() {
  int dev = 0, sms = 132;
  if (cudaGetDevice(&dev) == cudaSuccess) cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev);
  return sms > 0 ? sms : 132;
}

inline int device_smem_per_sm() {
  int dev = 0, bytes = 228 * 1024;
  if (cudaGetDevice(&dev) == cudaSuccess)
    cudaDeviceGetAttribute(&bytes, cudaDevAttrMaxSharedMemoryPerMultiprocessor, dev);
  return bytes > 0 ? bytes : 228 * 1024;
}

// Whether this build has the wgmma kernels (compiled for sm_90a; every element type).
template <typename T>
constexpr bool wgmma_built() {
#if defined(DCN_IGEMM_WGMMA)
  return true;
#else
  return false;
#endif
}

// Whether the current device runs them: exactly compute capability 9.0 (sm_90a code runs
// on nothing else).
inline bool device_runs_wgmma() {
  int dev = 0, major = 0, minor = 0;
  if (cudaGetDevice(&dev) != cudaSuccess) return false;
  if (cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev) != cudaSuccess) return false;
  if (cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, dev) != cudaSuccess) return false;
  return major == 9 && minor == 0;
}

// Whether the element type T has this warp-specialised tile's kernel (WsShape::kBuilt).
template <typename T>
inline bool ws_tile_built(Tile t) {
  switch (t) {
#define DCN_IGEMM_WS_BUILT(NAME, BM, BN, P) \
  case Tile::NAME:                          \
    return WsShape<T, BM, BN, P>::kBuilt;
    DCN_IGEMM_WS_TILES(DCN_IGEMM_WS_BUILT)
#undef DCN_IGEMM_WS_BUILT
    default:
      return true;
  }
}

template <typename T>
inline bool valid_config(const Shape& s, const Config& c) {
  if (c.split_k < 1 || c.split_k > s.k_steps) return false;
  if ((int)c.tile < 0 || (int)c.tile >= kTileCount) return false;
  if (is_ws_tile(c.tile) && !s.ws_image) return false;  // one corner-table fill per block, and the B image
  if (is_ws_tile(c.tile) && !ws_tile_built<T>(c.tile)) return false;  // k128x64ws: fp32 only
  if (is_ra_tile(c.tile) && (!s.ra_image || c.split_k != 1)) return false;  // 64 channels, 3x3, whole K
  // The packed weights end at cout_pad output channels: a wider tile (64x256) would read
  // past them.
  if (align_up(s.cout, tile_n(c.tile)) > (size_t)s.cout_pad) return false;
  return !is_wgmma_tile(c.tile) || wgmma_built<T>();
}

inline long long tile_count(const Shape& s, Tile t) {
  const int patch_h = tile_m(t) / kPatchW;
  const long long tiles_m = (long long)s.batch * ((s.out_h + patch_h - 1) / patch_h) *
                            ((s.out_w + kPatchW - 1) / kPatchW);
  return tiles_m * ((s.cout + tile_n(t) - 1) / tile_n(t));
}

// Blocks of this tile one SM holds for element type T: the kernel's register bound
// (MinBlocks) or what its shared memory allows (fp32 tiles carry two B tiles), whichever
// is smaller; 1 KB of each block's shared memory is the driver's.
template <typename T>
inline int tile_blocks_per_sm(Tile t, int smem_per_sm) {
  int smem = 0, bound = 1;
  switch (t) {
#define DCN_IGEMM_OCCUPANCY(NAME, BM, BN, WARPS_M, THREADS) \
  case Tile::NAME:                                          \
    smem = MmaShape<T, BM, BN, WARPS_M, THREADS>::kSmem;    \
    bound = MinBlocks<T, BM, BN, THREADS>::value;           \
    break;
    DCN_IGEMM_TILES(DCN_IGEMM_OCCUPANCY)
#undef DCN_IGEMM_OCCUPANCY
#define DCN_IGEMM_WGMMA_OCCUPANCY(NAME, BM, BN)         \
  case Tile::NAME:                                      \
    smem = WgmmaShape<T, BM, BN>::kSmem;                \
    bound = WgmmaMinBlocks<T, BM, BN>::value;           \
    break;
    DCN_IGEMM_WGMMA_TILES(DCN_IGEMM_WGMMA_OCCUPANCY)
#undef DCN_IGEMM_WGMMA_OCCUPANCY
#define DCN_IGEMM_WS_OCCUPANCY(NAME, BM, BN, P) \
  case Tile::NAME:                              \
    smem = WsShape<T, BM, BN, P>::kSmem;        \
    bound = 1;                                  \
    break;
    DCN_IGEMM_WS_TILES(DCN_IGEMM_WS_OCCUPANCY)
#undef DCN_IGEMM_WS_OCCUPANCY
    case Tile::k128x64ra:
      smem = RaShape::kSmem;
      bound = 1;
      break;
    default:
      break;
  }
  const int fit = smem_per_sm / (smem + 1024);
  return fit < bound ? fit : bound;  // 0: does not fit this device (e.g. fp32 64x128 on an A100)
}

// Picks the block shape and the split of K from the layer's GEMM size, batch included
// (rules fitted to a sweep of every block shape and split over the CenterNet layers on an
// H100, see bench/NOTES.md). 8-warp blocks, one or two per SM (tile_blocks_per_sm). The
// sweep's times jump once a launch needs a second wave, so the rule fills one wave (SMs x
// blocks per SM) as fully as it can; among the candidates within 90 % of the fullest it
// prefers, in order: a 64x128 tile for 256 or more output channels (it gathers each A tile
// once per 128 outputs, not per 64), the fewest K slices (at most 4; each slice adds fp32
// partials and a reduction), then a wgmma tile (same work, about 10 % faster than its
// mma.sync twin). Launches too big for one wave are not split and take 128x64 tiles (64
// output channels, 128 with wgmma) or 64x64 / 64x128 ones. Batch 1 on wgmma builds and in
// fp32, and batches on wgmma builds, follow the later rules below (one large block per SM;
// a cost with each tile's step time).
//
// The split fixes the order in which each output's fp32 sum is formed, so one call always
// gives the same bits (no atomics, a fixed reduction order), but a batch may sum in another
// order than its images alone: a split that fills the GPU for one image (e.g. 4 slices at
// 16x16) would cost a batch of 8 four times the partials and waves (up to 1.8x a layer,
// bench/NOTES.md). The block shape and the MMA instruction do not change the order: wgmma
// and mma.sync tiles with the same split give identical bits (checked on an H100).
template <typename T>
inline Config choose_config(const Shape& shape, int sms, int smem_per_sm, bool wgmma) {
  constexpr int kMinSteps = 3, kMaxSplit = 4;
  const long long max_split = shape.k_steps / kMinSteps > 1 ? shape.k_steps / kMinSteps : 1;
  const bool wide = shape.cout >= 256;
  const bool use_wgmma = wgmma && wgmma_built<T>();
  constexpr Tile kMma[] = {Tile::k32x64w8, Tile::k64x64w8, Tile::k128x64w8, Tile::k64x128w8};
  constexpr Tile kWgmma[] = {Tile::k32x64w8, Tile::k64x64wg, Tile::k128x64wg, Tile::k64x128wg};
  // The fullest one-wave candidate for shape s among `tiles`, K splits limited to [lo, hi];
  // split_k 0 when even the smallest launch needs more than one wave.
  auto fill_wave = [&](const Shape& s, const Tile* tiles, long long lo, long long hi) {
    Config best{Tile::k32x64w8, 0};
    long long best_fill = 0;  // blocks per 1000 block slots of one wave
    bool best_wide = false, best_wg = false;
    // Two passes: the fullest wave first, then the preferred candidate within 90 % of it.
    for (int pass = 0; pass < 2; ++pass) {
      for (int i = 0; i < 4; ++i) {
        const Tile tile = tiles[i];
        const bool is_wg = is_wgmma_tile(tile);
        const bool is_wide = tile == Tile::k64x128w8 || tile == Tile::k64x128wg;
        if (is_wide && !wide) continue;
        const long long t = tile_count(s, tile);
        const long long wave = (long long)sms * tile_blocks_per_sm<T>(tile, smem_per_sm);
        for (long long split = lo; split <= hi; ++split) {
          const long long blocks = t * split;
          if (blocks > wave) break;
          const long long fill = blocks * 1000 / wave;
          if (pass == 0) {
            if (fill > best_fill) best_fill = fill;
            continue;
          }
          if (fill * 10 < best_fill * 9) continue;
          bool better = best.split_k == 0 || (is_wide && !best_wide);
          if (!better && is_wide == best_wide) better = split < best.split_k || (split == best.split_k && is_wg && !best_wg);
          if (better) {
            best = Config{tile, (int)split};
            best_wide = is_wide;
            best_wg = is_wg;
          }
          break;  // more slices of this tile only add partials
        }
      }
    }
    return best;
  };
  const Tile* tiles = use_wgmma ? kWgmma : kMma;
  const long long cap = max_split < kMaxSplit ? max_split : kMaxSplit;
  // More than one wave: 128x64 tiles for 64 output channels, and with wgmma for 128 too (a
  // batch-8 fp16 sweep: 128x64wg beat 64x64wg on three of the four 128-output layers; fp32's
  // 128x64 tile holds one block per SM and loses there), 64x128 for wide layers.
  auto fits = [&](Tile t) { return tile_blocks_per_sm<T>(t, smem_per_sm) > 0; };
  // fp32 (3xTF32, whose 64x128 tile runs without spills since v13b) takes 64x128 for 128
  // outputs too: at batch 8 it beat 64x64 by 17-27 % on all four 128-output layers.
  const bool tf32x3 = Traits<T>::kTf32x3;
  // fp32 with at most 64 outputs: the 128-row warp-specialised tile where 128-row tiles fill
  // one wave or take several (sixteenth session, bench/NOTES.md v29, one H100, against the
  // rule's 128x64wg: 64->64 at 128x128 batch 1 31.7 -> 25.9 us channels-last, at 96x320
  // 60.7 -> 50.7 us; NCHW 33.6 -> 28.3 and 64.8 -> 55.5 us).
  const bool ws128 = use_wgmma && tf32x3 && shape.cout <= 64 && valid_config<T>(shape, Config{Tile::k128x64ws, 1}) &&
                     fits(Tile::k128x64ws);
  auto several_waves = [&](int split) {
    if (ws128) return Config{Tile::k128x64ws, split};
    const Tile narrow = use_wgmma ? Tile::k128x64wg : Tile::k128x64w8;
    const Tile wide_tile = use_wgmma ? Tile::k64x128wg : Tile::k64x128w8;
    if ((wide || (tf32x3 && shape.cout >= 128)) && fits(wide_tile)) return Config{wide_tile, split};
    if (shape.cout <= (use_wgmma ? 128 : 64) && fits(narrow)) return Config{narrow, split};
    return Config{use_wgmma ? Tile::k64x64wg : Tile::k64x64w8, split};
  };
  // wgmma builds and fp32: about one block per SM of the largest tile, not a full wave of
  // two. A block's K step is bound by its gathers' latency, so a second block per SM buys
  // less than a block twice the size or a K split twice as deep (fourth-session sweep of
  // every tile and split up to 16 on the 16 DLA-34 shapes: 7-9 % below the one-wave rule at
  // batch 1, within 1.5 % of the best configuration per layer). The first tile of the
  // order that reaches 90 % of the SMs within one wave, at the fewest slices of at least 9
  // K steps (at most 8 slices), wins.
  constexpr int kMinSliceSteps = 9, kMaxBigSplit = 8;
  auto one_per_sm = [&](long long lo, long long hi) {
    Tile order[5];
    int n = 0;
    if (ws128) order[n++] = Tile::k128x64ws;
    if (use_wgmma) {
      if (shape.cout >= 128) order[n++] = Tile::k64x128wg;
      order[n++] = Tile::k64x64wg;
      order[n++] = Tile::k128x64wg;
      order[n++] = Tile::k32x64w8;
    } else {
      order[n++] = shape.cout >= 128 ? Tile::k64x128w8 : Tile::k128x64w8;
      order[n++] = Tile::k64x64w8;
      order[n++] = Tile::k32x64w8;
    }
    for (int i = 0; i < n; ++i) {
      const long long wave = (long long)sms * tile_blocks_per_sm<T>(order[i], smem_per_sm);
      const long long t = tile_count(shape, order[i]);
      for (long long split = lo; split <= hi && split <= kMaxBigSplit; ++split) {
        if (split > 1 && shape.k_steps / split < kMinSliceSteps) break;
        if (t * split > wave) break;
        if (t * split * 10 >= 9LL * sms) return Config{order[i], (int)split};
      }
    }
    return Config{Tile::k32x64w8, 0};
  };
  // Any batch on wgmma builds, one corner-table fill per block: the warp-specialised
  // tiles, whose split-K slices share the reduction (split_k_shared): a slice then costs
  // little more than its K steps, and deeper splits of shorter slices pay where one slice
  // summing all of them did not (seventh-session sweep, bench/NOTES.md v16: 256->128 at
  // 32x32 9.8 against 10.7 us, 256->64 at 32x32 8.1 against 10.1). The first of 64x128ws
  // (128 or more outputs) and 64x64ws whose fullest one-wave split, in slices of at least
  // 4 K steps (at most 16), fills 90 % of the SMs (512->256 at 16x16: 16 slices of
  // 64x128, 128 blocks, 10.1 us; 15 slices, 120 blocks, 11.0 us). Batches whose tiles fit
  // one such wave take it too (eighth session, v16c: batch 8 at 32x32 and 16x16, 11-27 %
  // faster a layer than the wgmma tiles of the batch rule below, in all three types).
  //
  // Where that wave needs two or more slices but the 32-row twin of the tile fills it
  // unsplit, 16-bit types with at most 18 K steps (128 input channels) take the twin:
  // twice the blocks of half the rows each do the same gathers per SM as the slices
  // without their partials and reduction (fifteenth session, bench/NOTES.md v27, one
  // H100, fp16 channels-last, batch 1: 128->64 at 64x64 9.5 -> 8.3 us, 128->128 at 64x64
  // 11.6 -> 10.1 us). One image with more K steps takes the twin too where it fills the
  // wave in slices of at least 18 steps (sixteenth session, v31, one H100, batch 1, fp16
  // channels-last / NCHW: 256->256 at 24x80 14.7 -> 13.8 / 18.2 -> 16.5 us unsplit,
  // 512->256 at 12x40 12.0 -> 11.3 / 14.3 -> 13.3 us in 4 slices); with shorter slices the
  // twin lost (256->64 at 32x32, 4 slices of 9 steps: 7.4 -> 7.9 us).
  constexpr int kMinSharedSliceSteps = 4, kMaxSharedSplit = 16, kMaxHalfTileSteps = 18;
  auto shared_split = [&]() {
    if (!use_wgmma || shape.dg * shape.taps > kTableTaps) return Config{Tile::k32x64w8, 0};
    const Tile order[2] = {Tile::k64x128ws, Tile::k64x64ws};
    const Tile halves[2] = {Tile::k32x128ws, Tile::k32x64ws};
    for (int i = shape.cout >= 128 ? 0 : 1; i < 2; ++i) {
      const long long wave = (long long)sms * tile_blocks_per_sm<T>(order[i], smem_per_sm);
      const long long t = tile_count(shape, order[i]);
      long long split = 0;
      while (split < kMaxSharedSplit && t * (split + 1) <= wave &&
             (split == 0 || shape.k_steps / (split + 1) >= kMinSharedSliceSteps))
        ++split;
      if (split == 0 || t * split * 10 < 9LL * sms) continue;
      if (split > 1 && !tf32x3 && (shape.k_steps <= kMaxHalfTileSteps || shape.batch == 1)) {
        const long long half_wave = (long long)sms * tile_blocks_per_sm<T>(halves[i], smem_per_sm);
        const long long half_tiles = tile_count(shape, halves[i]);
        long long half_split = 0;  // the twin's fullest one-wave split in slices of kMaxHalfTileSteps
        while (half_tiles * (half_split + 1) <= half_wave &&
               (half_split == 0 || shape.k_steps / (half_split + 1) >= kMaxHalfTileSteps))
          ++half_split;
        if (half_split > 0 && half_tiles * half_split * 10 >= 9LL * sms) return Config{halves[i], (int)half_split};
      }
      return Config{order[i], (int)split};
    }
    return Config{Tile::k32x64w8, 0};
  };
  const bool big_blocks = use_wgmma || tf32x3;
  // 64-channel 3x3 layers (one deformable group, 16-bit types) whose 128-pixel tiles fill
  // at least 90 % of one wave: the register-A tile, unsplit (tenth session, bench/NOTES.md
  // v20, one H100: 64->64 at 128x128 batch 1 12.6 -> 11.0 us channels-last, 15.9 -> 14.6 us
  // NCHW, against 64x64wg). Launches of several waves take it too since its weight copy
  // overlaps the first K step (twelfth session, v21b, one H100, against the wgmma tiles:
  // 96x320 fp16 21.0 -> 20.4 us channels-last, 25.7 -> 25.1 NCHW; batch 8 fp16 161.5 ->
  // 148.9 and 196.4 -> 191.0 us; bf16 at 96x320 a tie at batch 1 channels-last, 29.5 ->
  // 28.2 NCHW, batch 8 183.7 -> 176.1 us). With fewer tiles it could not fill the SMs
  // without splitting K, which it does not do.
  if (use_wgmma && shape.ra_image) {
    const long long wave = (long long)sms * tile_blocks_per_sm<T>(Tile::k128x64ra, smem_per_sm);
    const long long tiles = tile_count(shape, Tile::k128x64ra);
    if (wave > 0 && tiles * 10 >= 9 * wave) return Config{Tile::k128x64ra, 1};
  }
  const Config shared = shared_split();
  if (shared.split_k > 0) return shared;
  if (shape.batch == 1) {
    if (big_blocks) {
      const Config c = one_per_sm(1, kMaxBigSplit);
      if (c.split_k > 0) return c;
    }
    const Config one_wave = fill_wave(shape, tiles, 1, cap);
    return one_wave.split_k > 0 ? one_wave : several_waves(1);
  }
  // A batch chooses its own split, by the fewest waves x K steps per block (a block's step
  // is bound by the gathers' latency more than by its size), each slice beyond the first
  // adding 1/8 for its partials and reduction; ties go to fewer slices. With wgmma the cost
  // weighs each tile's step time and a block's fixed cost instead (below); elsewhere each
  // split takes the block shape chosen as above. One image's choice kept for a batch
  // multiplied its partials and waves (256->256 at 32x32: 45 instead of 54 us at batch 8
  // without it), and an unsplit batch left big-K layers in one underfilled wave of 72-144
  // K steps (512->256 at 12x40, fp32: 473 instead of 311 us).
  Config best{Tile::k32x64w8, 0};
  long long best_cost = 0;
  if (use_wgmma) {
    // wgmma builds: the (tile, split) of the lowest cost, waves x (K steps of a slice + a
    // block's fixed cost, about 16 steps: start-up, epilogue, partials) x the tile's step
    // time, in hundredths of a 64x64wg step (a wave of them): larger tiles do more work per
    // step time, smaller ones quantise the waves less; a split pays only where it saves
    // waves. Fitted to fourteenth-session sweeps of every wgmma and warp-specialised tile
    // on the 12 DLA-34 shapes that are not 64->64 (batch 8 at splits 1-8, fp16 and fp32;
    // batch 3 at splits 1-3, fp16; bench/NOTES.md v25, one H100): its picks were the
    // fastest measured on 33 of 35 (shape, batch, type) and within 0.6 us (fp16) and
    // 3.3 us (fp32, 2 %) on the other two. The warp-specialised tiles run several waves
    // here (their slices, if any, then reduce as the other kernels do) and take about half
    // a wgmma tile's time for a step; 64x256wg applies where 256 divides the padded output
    // channels (valid_config). fp32 holds one block of any tile per SM (none of 64x256),
    // 16-bit types two of the 64-row or 128x64 wgmma ones.
    constexpr long long kBlockSteps = 16;
    struct Step {
      Tile tile;
      long long step;
      long long split_steps;  // a slice's fixed cost beyond kBlockSteps, where measured apart
    };
    // k32x128ws: fitted to its batch-8 run on 512->256 at 12x40 (sixteenth session, v32,
    // one H100: 46.0 against 55.9 us for 64x256wg in 3 slices, fp16; bf16 53.9 against
    // 64.6); in the model it wins nowhere else at DLA-34's shapes, as measured (256->256 at
    // 32x32 51.5 against 34.2 us, 128->128 at 64x64 62.7 against 42.5).
    //
    // k64x256ws: fitted to its runs against the rule's picks at batches 2-8 on the four
    // 256-output DLA-34 shapes (seventeenth session, v33, one H100, fp16): unsplit it gathers
    // each A tile once for 256 outputs and wins wherever a wave of them is busy (256->256 at
    // 24x80 batch 8 65.7 -> 49.4 us, at 32x32 34.0 -> 25.5). Where a first fit (step 44)
    // split it, it lost (256->256 at 24x80 batch 6 in 2 slices 59.3 us against 53.6 for
    // 64x128ws unsplit, at 32x32 batch 3 20.6 against 18.6): its slices run tap-major and
    // cost more a step, so a split costs it a second block's fixed cost.
    //
    // k32x256ws: fitted to its runs at batches 1-8 on the same shapes (v34): where 64-row
    // patches would leave rows empty and SMs idle it fills the wave with whole 4 x 8
    // patches (512->256 at 12x40 batch 8: 120 blocks against 80, 35.4 against 46.1 us for
    // 64x256ws, bf16 41.0 against 52.1); elsewhere it lost (256->256 at 24x80 batch 8 77.0
    // against 49.8 us, 512->256 at 12x40 batch 6 34.4 against 32.8 for 64x128ws). Its
    // splits count as 64x256ws's.
    constexpr Step kSteps16[] = {{Tile::k64x64wg, 100, 0},  {Tile::k128x64wg, 175, 0}, {Tile::k64x128wg, 117, 0},
                                 {Tile::k128x128wg, 120, 0}, {Tile::k64x256wg, 90, 0},  {Tile::k64x64ws, 44, 0},
                                 {Tile::k64x128ws, 47, 0},  {Tile::k32x128ws, 34, 0}, {Tile::k64x256ws, 60, kBlockSteps},
                                 {Tile::k32x256ws, 48, kBlockSteps}};
    // k128x64ws (fp32 only): fitted to its batch-8 runs on the 64->64 layers (sixteenth
    // session, v29: 128x128 209 against 224 us for 64x64ws, 96x320 394 against 406 us).
    constexpr Step kSteps32[] = {{Tile::k64x64wg, 100, 0},  {Tile::k128x64wg, 160, 0}, {Tile::k64x128wg, 122, 0},
                                 {Tile::k128x128wg, 180, 0}, {Tile::k64x64ws, 68, 0},   {Tile::k64x128ws, 89, 0},
                                 {Tile::k128x64ws, 128, 0}};
    auto cheapest = [&](const auto& table) {
      for (const Step& candidate : table) {
        const long long wave = (long long)sms * tile_blocks_per_sm<T>(candidate.tile, smem_per_sm);
        if (wave == 0 || !valid_config<T>(shape, Config{candidate.tile, 1})) continue;
        if (candidate.tile == Tile::k128x64ws && !ws128) continue;  // measured on 64 outputs only
        for (long long split = 1; split <= cap; ++split) {
          const long long waves = (tile_count(shape, candidate.tile) * split + wave - 1) / wave;
          const long long fixed = kBlockSteps + (split > 1 ? candidate.split_steps : 0);
          const long long cost = waves * ((shape.k_steps + split - 1) / split + fixed) * candidate.step;
          if (best.split_k == 0 || cost < best_cost) {
            best = Config{candidate.tile, (int)split};
            best_cost = cost;
          }
        }
      }
    };
    if (tf32x3) {
      cheapest(kSteps32);
    } else {
      cheapest(kSteps16);
    }
    if (best.split_k > 0) return best;
  }
  for (long long split = 1; split <= cap; ++split) {
    Config c = big_blocks ? one_per_sm(split, split) : Config{Tile::k32x64w8, 0};
    if (c.split_k == 0) c = fill_wave(shape, tiles, split, split);
    if (c.split_k == 0) c = several_waves((int)split);
    const long long wave = (long long)sms * tile_blocks_per_sm<T>(c.tile, smem_per_sm);
    const long long waves = (tile_count(shape, c.tile) * split + wave - 1) / wave;
    const long long cost = waves * ((shape.k_steps + split - 1) / split) * (7 + split);
    if (best.split_k == 0 || cost < best_cost) {
      best = c;
      best_cost = cost;
    }
  }
  return best;
}

// The configuration launch_igemm_forward uses on the current device.
template <typename T>
inline Config auto_config(const Shape& s) {
  return choose_config<T>(s, device_sm_count(), device_smem_per_sm(), device_runs_wgmma());
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
  if ((size_t)s.cpg_pad * sizeof(T) > (size_t)kZeroPixelBytes) return false;  // g_zero_pixel's size
  // 32-bit index math: element offsets into the NHWC copy (all images), pixel indices
  // (plus a tile), offset/mask channel indices and packed-weight indices.
  constexpr long long kLimit = (1LL << 31) - 1024;
  // The corner table forms its corners' element offsets in 32 bits, up to one row and one
  // pixel past the last image (corners outside the image, which read the zero pixel
  // instead): those must not overflow either.
  if (((long long)s.batch * s.height * s.width + s.width + 1) * s.c_pad >= kLimit) return false;
  if (s.m_total >= kLimit) return false;
  if ((long long)s.batch * 3 * s.dg * s.taps >= kLimit) return false;
  if ((long long)s.batch * g.in_channels >= kLimit) return false;
  if ((Traits<T>::kTf32x3 ? 2LL : 1LL) * s.k_steps * Traits<T>::kChunk * s.cout_pad >= kLimit) return false;
  if ((long long)g.out_channels * g.in_channels * s.taps >= kLimit) return false;
  return true;
}

// Channels-last input needs no NHWC copy when a K step's channels never cross the end of a
// pixel's (or a group's) channels, i.e. each group holds a multiple of the chunk.
template <typename T>
inline bool channels_last_supported(const ConvGeometry& g) {
  return shape_supported<T>(g) && (g.in_channels / g.deformable_groups) % Traits<T>::kChunk == 0;
}

template <typename T>
inline size_t workspace_bytes_for(const ConvGeometry& g, const Config& c) {
  return make_layout<T>(make_shape<T>(g), c).total;
}
template <typename T>
inline size_t workspace_bytes_for(const ForwardArgs<T>& a, const Config& c) {
  return make_layout<T>(make_shape<T>(a), c).total;
}

// after_prepare: the GEMM may start while the prepare kernel runs (programmatic dependent
// launch); without a prepare kernel it must not, since its corner table reads the offsets
// that the stream's previous kernel may still be writing. Only some launches overlap,
// as measured on an H100 (NCHW input, 16 DLA-34 layers): split-K launches never (fp16 at
// 512x512: 302 against 278 us; the early blocks cost the prepare kernel more than the
// overlap saves), 16-bit ones only with more blocks than SMs (about 1 us a layer gained
// at two blocks per SM, 5 us lost at one: 128->128 at 48x160), fp32 unsplit ones always.
// The warp-specialised kernels (early_launch_ok) always, split or not: their corner table
// then fills while prepare copies the input (fp16 at 512x512, batch 1: 244.4 against
// 235.5 us, layers slower than torchvision 3 -> 0; 384x1280: 320.1 against 309.0 us;
// seventh session, bench/NOTES.md v16b).
//
// Without a prepare kernel, kernels that wait first (early_launch_ok: the warp-specialised
// ones, and the wgmma ones for 16-bit types) are launched programmatically too: their launch and block start-up
// then overlap the previous kernel's last blocks, and griddepcontrol.wait at their entry
// keeps every global access after that kernel's completion (wgmma, channels-last fp16 b1 on
// one H100: the 64->64 layers 13.6 -> 13.1 us; bench/NOTES.md v19).
template <typename T, typename KernelFn>
inline cudaError_t launch_dynamic(KernelFn kernel, dim3 grid, int threads, int smem, cudaStream_t stream,
                                  GemmParams<T> gp, bool after_prepare, bool early_launch_ok = false) {
  cudaError_t err = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, smem);
  if (err != cudaSuccess) return err;
  int dev = 0, major = 0;
  if (cudaGetDevice(&dev) == cudaSuccess) cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev);
  cudaLaunchConfig_t config = {};
  config.gridDim = grid;
  config.blockDim = dim3((unsigned)threads);
  config.dynamicSmemBytes = (size_t)smem;
  config.stream = stream;
  cudaLaunchAttribute attrs[2];
  config.attrs = attrs;
  const bool overlap_pays = gp.split_k == 1 && (Traits<T>::kTf32x3 || (long long)grid.x * grid.y > device_sm_count());
  gp.early_launch = major >= 9 && !after_prepare && early_launch_ok;
  if (major >= 9 && ((after_prepare && (overlap_pays || early_launch_ok)) || gp.early_launch)) {  // griddepcontrol: Hopper on
    attrs[config.numAttrs].id = cudaLaunchAttributeProgrammaticStreamSerialization;
    attrs[config.numAttrs++].val.programmaticStreamSerializationAllowed = 1;
  }
  if (gp.shared_reduction) {
    // The slices wait for each other: every block must be resident at once. A grid larger
    // than that is not launched cooperatively (a failed launch would also end a stream
    // capture); the last slice reduces instead.
    int per_sm = 0;
    if (cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, kernel, threads, (size_t)smem) != cudaSuccess ||
        (long long)per_sm * device_sm_count() < (long long)grid.x * grid.y)
      gp.shared_reduction = false;
  }
  if (gp.shared_reduction) {  // all blocks resident, or no launch
    attrs[config.numAttrs].id = cudaLaunchAttributeCooperative;
    attrs[config.numAttrs++].val.cooperative = 1;
  }
  cudaError_t launched = cudaLaunchKernelEx(&config, kernel, gp);
  if (launched == cudaErrorCooperativeLaunchTooLarge) {
    // Fewer SMs than the rule assumed (e.g. a partitioned GPU): the last slice reduces.
    (void)cudaGetLastError();
    gp.shared_reduction = false;
    config.numAttrs -= 1;
    launched = cudaLaunchKernelEx(&config, kernel, gp);
  }
  return launched;
}

template <typename T>
inline cudaError_t launch_with(const ForwardArgs<T>& args, void* workspace, cudaStream_t stream,
                               const Config& config) {
  const ConvGeometry& g = args.geometry;
  if (!shape_supported<T>(g)) return cudaErrorNotSupported;
  if (args.channels_last && !channels_last_supported<T>(g)) return cudaErrorNotSupported;
  const Shape s = make_shape<T>(args);
  if (!valid_config<T>(s, config)) return cudaErrorInvalidValue;
  const Layout l = make_layout<T>(s, config);
  if (workspace == nullptr && l.total > 0) return cudaErrorInvalidValue;
  char* ws = static_cast<char*>(workspace);
  const T* input_nhwc = s.channels_last ? args.input : reinterpret_cast<T*>(ws + l.input_offset);
  const T* weight_packed = s.weights_resident ? args.weight_packed : reinterpret_cast<T*>(ws + l.weight_offset);
  float* partials = reinterpret_cast<float*>(ws + l.partial_offset);
  const int tiles = l.tiles_m * l.tiles_n;
  int* counters = s.counters_resident ? args.split_k_counters : reinterpret_cast<int*>(ws + l.counter_offset);
  const bool zero_counters = config.split_k > 1 && !s.counters_resident;

  PrepareParams<T> pp;
  pp.input = args.input;
  pp.weight = args.weight;
  pp.input_nhwc = const_cast<T*>(input_nhwc);
  pp.weight_packed = const_cast<T*>(weight_packed);
  pp.counters = counters;
  pp.counter_count = zero_counters ? tiles : 0;
  pp.channels = g.in_channels;
  pp.cpg = g.in_channels / s.dg;
  pp.s = s;
  pp.vector_loads = (g.height * g.width) % Traits<T>::kVec == 0 &&
                    reinterpret_cast<uintptr_t>(args.input) % kVectorBytes == 0;
  constexpr int kTile = kChunkBytes / (int)sizeof(T);
  const long long pixel_tiles = ((long long)s.height * s.width + kTile - 1) / kTile;
  const long long transpose_blocks = s.channels_last ? 0 : pixel_tiles * (s.c_pad / kTile) * s.batch;
  // Resident weights: one block only when it has counters to zero.
  const long long pack_blocks = s.weights_resident ? (zero_counters ? 1 : 0) : (long long)s.cout_pad;
  if (transpose_blocks + pack_blocks >= (1LL << 31)) return cudaErrorNotSupported;
  pp.transpose_blocks = (int)transpose_blocks;
  const bool prepare = transpose_blocks + pack_blocks > 0;
  if (prepare) {
    prepare_kernel<T><<<(unsigned)(transpose_blocks + pack_blocks), 256, 0, stream>>>(pp);
    const cudaError_t err = cudaGetLastError();
    if (err != cudaSuccess) return err;
  }

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
  gp.by_tiles_m = FastDiv(l.tiles_m);
  gp.by_taps = FastDiv(s.taps);
  gp.by_kernel_w = FastDiv(s.kernel_w);
  gp.by_cpq = FastDiv(s.chunks_per_q);
  gp.by_per_group = FastDiv(s.taps * s.chunks_per_q);
  gp.patches_h = (s.out_h + tile_m(config.tile) / kPatchW - 1) / (tile_m(config.tile) / kPatchW);
  gp.patches_w = (s.out_w + kPatchW - 1) / kPatchW;
  gp.by_per_image = FastDiv(gp.patches_h * gp.patches_w);
  gp.by_patches_w = FastDiv(gp.patches_w);
  gp.split_k = config.split_k;
  // Slice bounds k_steps * split / split_k in 32 bits (FastDiv): shape_supported keeps
  // k_steps below 2^31 / (chunk * 128) and the rules split at most 16 ways.
  if ((long long)s.k_steps * config.split_k >= (1LL << 31)) return cudaErrorNotSupported;
  gp.by_split_k = FastDiv(config.split_k);
  gp.early_launch = false;  // launch_dynamic decides
  gp.shared_reduction = is_ws_tile(config.tile) && config.split_k > 1 && config.shared_reduction;
  const dim3 grid((unsigned)tiles, (unsigned)config.split_k);
  {
#define DCN_IGEMM_TILE(NAME, BM, BN, WARPS_M, THREADS)                                          \
  case Tile::NAME:                                                                               \
    return launch_dynamic<T>(igemm_mma_kernel<T, BM, BN, WARPS_M, THREADS>, grid, THREADS,       \
                             MmaShape<T, BM, BN, WARPS_M, THREADS>::kSmem, stream, gp, prepare);
#define DCN_IGEMM_WGMMA_TILE(NAME, BM, BN)                                                        \
  case Tile::NAME:                                                                               \
    if constexpr (wgmma_built<T>() && WgmmaShape<T, BM, BN>::kSmem <= kMaxSmemPerBlock) {       \
      return launch_dynamic<T>(igemm_wgmma_kernel<T, BM, BN>, grid, 256, WgmmaShape<T, BM, BN>::kSmem, \
                               stream, gp, prepare, !prepare && !Traits<T>::kTf32x3);            \
    }                                                                                            \
    return cudaErrorInvalidValue;
#define DCN_IGEMM_WS_TILE(NAME, BM, BN, P)                                                             \
  case Tile::NAME:                                                                                     \
    if constexpr (wgmma_built<T>() && WsShape<T, BM, BN, P>::kBuilt) {                                \
      return launch_dynamic<T>(igemm_ws_kernel<T, BM, BN, P>, grid, WsShape<T, BM, BN, P>::kThreads,    \
                               WsShape<T, BM, BN, P>::kSmem, stream, gp, prepare, true);               \
    }                                                                                                  \
    return cudaErrorInvalidValue;
    switch (config.tile) {
      DCN_IGEMM_TILES(DCN_IGEMM_TILE)
      DCN_IGEMM_WGMMA_TILES(DCN_IGEMM_WGMMA_TILE)
      DCN_IGEMM_WS_TILES(DCN_IGEMM_WS_TILE)
      case Tile::k128x64ra:
        if constexpr (wgmma_built<T>() && !Traits<T>::kTf32x3) {
          return launch_dynamic<T>(igemm_ra_kernel<T>, grid, RaShape::kThreads, RaShape::kSmem, stream, gp, prepare,
                                   true);
        }
        return cudaErrorInvalidValue;
      default:
        break;
    }
#undef DCN_IGEMM_TILE
#undef DCN_IGEMM_WGMMA_TILE
#undef DCN_IGEMM_WS_TILE
  }
  return cudaErrorInvalidValue;
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

// True when launch_igemm_forward also takes this geometry channels-last (each deformable
// group holds a multiple of 64 (fp16/bf16) or 32 (fp32) channels).
template <typename T>
bool igemm_channels_last_supported(const ConvGeometry& geometry) {
  return igemm_supported<T>(geometry) && igemm::channels_last_supported<T>(geometry);
}

// Bytes of device scratch launch_igemm_forward needs on the current device (the NHWC
// copy of the input, the packed weights and, for split-K layers, fp32 partials and tile
// counters). The geometry-only form is the most any ForwardArgs of that geometry needs;
// the ForwardArgs form leaves out what the caller provides (channels-last input, resident
// weights or counters).
template <typename T>
size_t igemm_workspace_bytes(const ConvGeometry& geometry) {
  if (!igemm::shape_supported<T>(geometry)) return 0;
  const igemm::Shape s = igemm::make_shape<T>(geometry);
  return igemm::workspace_bytes_for<T>(geometry, igemm::auto_config<T>(s));
}
template <typename T>
size_t igemm_workspace_bytes(const ForwardArgs<T>& args) {
  if (!igemm::shape_supported<T>(args.geometry)) return 0;
  const igemm::Shape s = igemm::make_shape<T>(args.geometry);
  return igemm::workspace_bytes_for<T>(args, igemm::auto_config<T>(s));
}

// Split-K tile counters launch_igemm_forward uses for this geometry (0: no split). A caller
// that keeps them between calls (ForwardArgs::split_k_counters) zeroes them once.
template <typename T>
int igemm_counter_count(const ConvGeometry& geometry) {
  if (!igemm::shape_supported<T>(geometry)) return 0;
  const igemm::Shape s = igemm::make_shape<T>(geometry);
  const igemm::Config c = igemm::auto_config<T>(s);
  if (c.split_k <= 1) return 0;
  const igemm::Layout l = igemm::make_layout<T>(s, c);
  return l.tiles_m * l.tiles_n;
}

// Elements of the packed weights (ForwardArgs::weight_packed) for this geometry.
template <typename T>
size_t igemm_packed_weight_elements(const ConvGeometry& geometry) {
  return igemm::packed_weight_elements<T>(igemm::make_shape<T>(geometry));
}

// Packs `weight` ([Cout, Cin, kh, kw]) into the GEMM's layout, for callers that keep the
// packed copy between calls (igemm_packed_weight_elements<T>(geometry) elements).
template <typename T>
cudaError_t launch_igemm_pack_weights(const ConvGeometry& geometry, const T* weight, T* packed,
                                      cudaStream_t stream) {
  if (!igemm::shape_supported<T>(geometry)) return cudaErrorNotSupported;
  igemm::PrepareParams<T> pp{};
  pp.weight = weight;
  pp.weight_packed = packed;
  pp.counter_count = 0;
  pp.channels = geometry.in_channels;
  pp.s = igemm::make_shape<T>(geometry);
  pp.cpg = geometry.in_channels / pp.s.dg;
  pp.transpose_blocks = 0;
  igemm::prepare_kernel<T><<<(unsigned)pp.s.cout_pad, 256, 0, stream>>>(pp);
  return cudaGetLastError();
}

// Runs the forward on `stream`. `workspace` must hold igemm_workspace_bytes<T>(args)
// bytes, 256-byte aligned, and must not be used by another launch running concurrently.
template <typename T>
cudaError_t launch_igemm_forward(const ForwardArgs<T>& args, void* workspace, cudaStream_t stream) {
  if (!igemm::shape_supported<T>(args.geometry)) return cudaErrorNotSupported;
  const igemm::Shape s = igemm::make_shape<T>(args.geometry);
  return igemm::launch_with<T>(args, workspace, stream, igemm::auto_config<T>(s));
}

}  // namespace dcn
