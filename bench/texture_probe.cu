// Can the texture units do DCN's bilinear sampling faster than our gathers? A probe
// (bench/NOTES.md v38): the sampling half of a 64-channel 3x3 layer (every pixel, tap and
// channel sampled, blended and modulated; no product), done two ways on the same data:
//  - ldg: the register-A kernel's gathers. A lane takes one pixel's 16 channels (the
//    wgmma fragment's layout: four lanes a pixel), two 16-byte loads a corner from the
//    NHWC input, weights and blend in fp32.
//  - tex: a pitch-linear 2-D texture of RGBA16F texels over the input in planar groups of
//    four channels ([C/4][H][W][4], the planes stacked along y), linear filtering, zero
//    border. A lane's 16 channels are four filtered fetches. The hardware blends the four
//    corners; its weights have 8 fractional bits (CUDA programming guide, texture
//    fetching), hence the error column. The planes touch along y, so a sample within one
//    pixel of the top or bottom edge is fetched on the edge row and scaled (zero padding).
// The outputs are compared with each other (rel L2) and each is timed as bench_dcn times a
// layer (CUDA-graph replay of 20 launches, median of 15).
//
//   nvcc -std=c++17 -O3 -gencode=arch=compute_90a,code=sm_90a bench/texture_probe.cu -o texture_probe
//   ./texture_probe [--json FILE]
#include <cmath>
#include <cstdio>
#include <random>
#include <vector>

#include <cuda_fp16.h>

#include "cuda_tool.h"

#define PROBE_CHECK(call) BENCH_CUDA_CHECK("texture_probe", call)

namespace {

constexpr int kChannels = 64;

struct Sampling {
  const __half* nhwc;    // [h][w][64]
  cudaTextureObject_t planar;  // [16][h][w] texels of 4 channels
  const float* offset;   // [18][h][w]: dy, dx per tap
  const float* mask;     // [9][h][w]
  __half* out;           // [h][w][64]: sum over the taps of the modulated samples
  int h, w;
};

__device__ __forceinline__ void tap_position(const Sampling& s, int pix, int tap, float& y, float& x, float& m) {
  const int plane = s.h * s.w;
  y = (float)(pix / s.w - 1 + tap / 3) + s.offset[(2 * tap) * plane + pix];
  x = (float)(pix % s.w - 1 + tap % 3) + s.offset[(2 * tap + 1) * plane + pix];
  m = s.mask[tap * plane + pix];
}

// Adds one tap's modulated sample of this lane's 16 channels to acc: from the NHWC input.
struct LdgSampler {
  __device__ __forceinline__ void operator()(const Sampling& s, int t, float y, float x, float m, float (&acc)[16]) const {
    const float fy = floorf(y), fx = floorf(x);
    const int y0 = (int)fy, x0 = (int)fx;
    const float wy = y - fy, wx = x - fx;
    const float wc[4] = {(1.f - wy) * (1.f - wx) * m, (1.f - wy) * wx * m, wy * (1.f - wx) * m, wy * wx * m};
    uint4 v[4][2];
#pragma unroll
    for (int c = 0; c < 4; ++c) {
      const int cy = y0 + c / 2, cx = x0 + c % 2;
      const bool ok = cy >= 0 && cy < s.h && cx >= 0 && cx < s.w;
      const uint4* row = reinterpret_cast<const uint4*>(s.nhwc + ((size_t)(ok ? cy : 0) * s.w + (ok ? cx : 0)) * kChannels + 16 * t);
      v[c][0] = ok ? __ldg(row) : make_uint4(0, 0, 0, 0);
      v[c][1] = ok ? __ldg(row + 1) : make_uint4(0, 0, 0, 0);
    }
#pragma unroll
    for (int c = 0; c < 4; ++c)
#pragma unroll
      for (int hlf = 0; hlf < 2; ++hlf) {
        const __half2* h2 = reinterpret_cast<const __half2*>(&v[c][hlf]);
#pragma unroll
        for (int k = 0; k < 4; ++k) {
          const float2 f = __half22float2(h2[k]);
          acc[8 * hlf + 2 * k] += wc[c] * f.x;
          acc[8 * hlf + 2 * k + 1] += wc[c] * f.y;
        }
      }
  }
};

// The same from the texture: four filtered fetches of four channels.
struct TexSampler {
  __device__ __forceinline__ void operator()(const Sampling& s, int t, float y, float x, float m, float (&acc)[16]) const {
    // Rows -1 and h belong to the neighbouring planes: fetch on the edge row, scaled.
    if (y < 0.f) {
      m *= y + 1.f;
      y = 0.f;
    } else if (y > (float)(s.h - 1)) {
      m *= (float)s.h - y;
      y = (float)(s.h - 1);
    }
#pragma unroll
    for (int g = 0; g < 4; ++g) {
      const float4 f = tex2D<float4>(s.planar, x + 0.5f, y + 0.5f + (float)((4 * t + g) * s.h));
      acc[4 * g] += m * f.x;
      acc[4 * g + 1] += m * f.y;
      acc[4 * g + 2] += m * f.z;
      acc[4 * g + 3] += m * f.w;
    }
  }
};

// Four lanes a pixel (the wgmma fragment's layout), lane t the channels [16 t, 16 t + 16);
// the sum over the taps is stored so that nothing is optimised away.
template <typename Sampler>
__global__ void __launch_bounds__(256) sampling_kernel(Sampling s) {
  const int lane_pixel = (int)(blockIdx.x * 256 + threadIdx.x) / 4, t = threadIdx.x % 4;
  if (lane_pixel >= s.h * s.w) return;
  float acc[16] = {};
#pragma unroll 3
  for (int tap = 0; tap < 9; ++tap) {
    float y, x, m;
    tap_position(s, lane_pixel, tap, y, x, m);
    if (y > -1.f && y < (float)s.h && x > -1.f && x < (float)s.w) Sampler()(s, t, y, x, m, acc);
  }
  __half2* out = reinterpret_cast<__half2*>(s.out + (size_t)lane_pixel * kChannels + 16 * t);
#pragma unroll
  for (int k = 0; k < 8; ++k) out[k] = __floats2half2_rn(acc[2 * k], acc[2 * k + 1]);
}

__global__ void empty_kernel(Sampling) {}

struct Result {
  int h, w;
  float empty_us, ldg_us, tex_us;
  double rel_l2;
};

template <typename Kernel>
float time_us(Kernel kernel, const Sampling& s, int blocks, cudaStream_t stream) {
  float us = 0.f;
  PROBE_CHECK(graph_timing::median_us_per_call(
      stream, 20,
      [&](cudaStream_t st) {
        kernel<<<blocks, 256, 0, st>>>(s);
        return cudaGetLastError();
      },
      us));
  return us;
}

Result run(int h, int w, cudaStream_t stream) {
  const int pixels = h * w;
  std::mt19937 gen(1234);
  std::normal_distribution<float> normal(0.f, 1.f);
  std::vector<__half> nhwc((size_t)pixels * kChannels), planar((size_t)pixels * kChannels);
  for (int p = 0; p < pixels; ++p)
    for (int c = 0; c < kChannels; ++c) {
      const __half v = __float2half(normal(gen));
      nhwc[(size_t)p * kChannels + c] = v;
      planar[((size_t)(c / 4) * pixels + p) * 4 + c % 4] = v;
    }
  std::vector<float> offset((size_t)18 * pixels), mask((size_t)9 * pixels);
  for (auto& o : offset) o = 2.f * normal(gen);
  for (auto& m : mask) m = 1.f / (1.f + std::exp(-normal(gen)));

  __half *d_nhwc, *d_planar, *d_out_ldg, *d_out_tex;
  float *d_offset, *d_mask;
  const size_t bytes = nhwc.size() * sizeof(__half);
  PROBE_CHECK(cudaMalloc(&d_nhwc, bytes));
  PROBE_CHECK(cudaMalloc(&d_planar, bytes));  // cudaMalloc's 256-byte alignment; pitch w * 8 bytes
  PROBE_CHECK(cudaMalloc(&d_out_ldg, bytes));
  PROBE_CHECK(cudaMalloc(&d_out_tex, bytes));
  PROBE_CHECK(cudaMalloc(&d_offset, offset.size() * sizeof(float)));
  PROBE_CHECK(cudaMalloc(&d_mask, mask.size() * sizeof(float)));
  PROBE_CHECK(cudaMemcpy(d_nhwc, nhwc.data(), bytes, cudaMemcpyHostToDevice));
  PROBE_CHECK(cudaMemcpy(d_planar, planar.data(), bytes, cudaMemcpyHostToDevice));
  PROBE_CHECK(cudaMemcpy(d_offset, offset.data(), offset.size() * sizeof(float), cudaMemcpyHostToDevice));
  PROBE_CHECK(cudaMemcpy(d_mask, mask.data(), mask.size() * sizeof(float), cudaMemcpyHostToDevice));

  cudaResourceDesc res = {};
  res.resType = cudaResourceTypePitch2D;
  res.res.pitch2D.devPtr = d_planar;
  res.res.pitch2D.desc = cudaCreateChannelDescHalf4();
  res.res.pitch2D.width = (size_t)w;
  res.res.pitch2D.height = (size_t)h * (kChannels / 4);
  res.res.pitch2D.pitchInBytes = (size_t)w * 4 * sizeof(__half);
  cudaTextureDesc desc = {};
  desc.addressMode[0] = desc.addressMode[1] = cudaAddressModeBorder;  // border colour 0
  desc.filterMode = cudaFilterModeLinear;
  desc.readMode = cudaReadModeElementType;
  desc.normalizedCoords = 0;
  cudaTextureObject_t tex = 0;
  PROBE_CHECK(cudaCreateTextureObject(&tex, &res, &desc, nullptr));

  Sampling s{d_nhwc, tex, d_offset, d_mask, d_out_ldg, h, w};
  const int blocks = (pixels * 4 + 255) / 256;
  Result r{h, w, 0.f, 0.f, 0.f, 0.0};
  r.empty_us = time_us(empty_kernel, s, blocks, stream);
  r.ldg_us = time_us(sampling_kernel<LdgSampler>, s, blocks, stream);
  Sampling st = s;
  st.out = d_out_tex;
  r.tex_us = time_us(sampling_kernel<TexSampler>, st, blocks, stream);
  PROBE_CHECK(cudaStreamSynchronize(stream));

  std::vector<__half> a(nhwc.size()), b(nhwc.size());
  PROBE_CHECK(cudaMemcpy(a.data(), d_out_ldg, bytes, cudaMemcpyDeviceToHost));
  PROBE_CHECK(cudaMemcpy(b.data(), d_out_tex, bytes, cudaMemcpyDeviceToHost));
  double diff = 0.0, norm = 0.0;
  for (size_t i = 0; i < a.size(); ++i) {
    const double x = __half2float(a[i]), y = __half2float(b[i]);
    diff += (x - y) * (x - y);
    norm += x * x;
  }
  r.rel_l2 = std::sqrt(diff / norm);
  PROBE_CHECK(cudaDestroyTextureObject(tex));
  for (void* p : {(void*)d_nhwc, (void*)d_planar, (void*)d_out_ldg, (void*)d_out_tex, (void*)d_offset, (void*)d_mask})
    PROBE_CHECK(cudaFree(p));
  return r;
}

}  // namespace

int main(int argc, char** argv) {
  const char* json_path = nullptr;
  if (!parse_json_only(argc, argv, "texture_probe", json_path)) return 2;
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess || count == 0) {
    std::fprintf(stderr, "texture_probe: no CUDA device\n");
    return 2;
  }
  cudaDeviceProp prop;
  PROBE_CHECK(cudaGetDeviceProperties(&prop, 0));
  cudaStream_t stream;
  PROBE_CHECK(cudaStreamCreate(&stream));
  const int shapes[2][2] = {{128, 128}, {96, 320}};
  std::vector<Result> results;
  std::printf("texture_probe on %s: 64 channels, 3x3, batch 1, sampling only (us per launch)\n", prop.name);
  std::printf("| HxW | empty launch | ldg gathers (fp32 blend) | texture filtering | rel L2 tex vs ldg |\n");
  std::printf("|---|---|---|---|---|\n");
  for (const auto& sh : shapes) {
    const Result r = run(sh[0], sh[1], stream);
    results.push_back(r);
    std::printf("| %dx%d | %.2f | %.2f | %.2f | %.2e |\n", r.h, r.w, r.empty_us, r.ldg_us, r.tex_us, r.rel_l2);
  }
  if (json_path) {
    FILE* f = std::fopen(json_path, "w");
    if (!f) {
      std::fprintf(stderr, "texture_probe: cannot write %s\n", json_path);
      return 1;
    }
    std::fprintf(f, "{\"device\": \"%s\", \"channels\": 64, \"layers\": [", prop.name);
    for (size_t i = 0; i < results.size(); ++i) {
      const Result& r = results[i];
      std::fprintf(f, "%s{\"h\": %d, \"w\": %d, \"empty_us\": %.3f, \"ldg_us\": %.3f, \"tex_us\": %.3f, \"rel_l2\": %.3e}",
                   i ? ", " : "", r.h, r.w, r.empty_us, r.ldg_us, r.tex_us, r.rel_l2);
    }
    std::fprintf(f, "]}\n");
    std::fclose(f);
  }
  return 0;
}
