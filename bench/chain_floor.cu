// The least time one DCN layer's kernel can take in bench_dcn's measurement (CUDA-graph
// replay of 20 back-to-back launches, median of 15), whatever its K loop: a launch like
// the register-A kernel's (256 threads a block, programmatic launch, griddepcontrol.wait
// at entry) that (a) does nothing, or (b) runs only the dependent chain every DCN kernel
// has: load a pixel's offset and mask, gather a corner at the address they give, store.
// bench/NOTES.md v21e.
//
//   nvcc -std=c++17 -O3 -gencode=arch=compute_90a,code=sm_90a bench/chain_floor.cu -o chain_floor
//   ./chain_floor [--json FILE]
#include <cstdio>
#include <cstdlib>

#include <cuda_fp16.h>

#include "cuda_tool.h"

#define FLOOR_CHECK(call) BENCH_CUDA_CHECK("chain_floor", call)

namespace {

struct Tensors {
  const __half* input;   // NHWC, 64 channels
  const __half* offset;  // [18, h, w]
  const __half* mask;    // [9, h, w]
  __half* output;        // NHWC, 64 channels
  int h, w;
};

__global__ void __launch_bounds__(256, 1) empty_kernel(Tensors) {
  asm volatile("griddepcontrol.wait;\n" ::: "memory");
}

// Two lanes a pixel, 128 pixels a block: offset and mask, then one 16-byte corner load at
// the position they give, then a store that depends on both.
__global__ void __launch_bounds__(256, 1) chain_kernel(Tensors t) {
  asm volatile("griddepcontrol.wait;\n" ::: "memory");
  const int plane = t.h * t.w;
  const int pix = (int)(blockIdx.x * 256 + threadIdx.x) / 2;
  if (pix >= plane) return;
  const float dy = __half2float(t.offset[pix]), dx = __half2float(t.offset[plane + pix]);
  const float m = __half2float(t.mask[pix]);
  const int y = min(max((int)((float)(pix / t.w) + dy), 0), t.h - 1);
  const int x = min(max((int)((float)(pix % t.w) + dx), 0), t.w - 1);
  const uint4 v = __ldg(reinterpret_cast<const uint4*>(t.input + ((size_t)y * t.w + x) * 64) + threadIdx.x % 2);
  const __half2 r = __hmul2(*reinterpret_cast<const __half2*>(&v.x), __float2half2_rn(m));
  reinterpret_cast<__half2*>(t.output + (size_t)pix * 64)[threadIdx.x % 2] = r;
}

template <typename Kernel>
float per_launch_us(Kernel kernel, const Tensors& t, int blocks, int smem, cudaStream_t stream) {
  FLOOR_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, smem));
  cudaLaunchConfig_t config = {};
  config.gridDim = dim3((unsigned)blocks);
  config.blockDim = dim3(256);
  config.dynamicSmemBytes = (size_t)smem;
  config.stream = stream;
  cudaLaunchAttribute attr[1];
  attr[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attr[0].val.programmaticStreamSerializationAllowed = 1;
  config.attrs = attr;
  config.numAttrs = 1;
  float us = 0.f;
  FLOOR_CHECK(graph_timing::median_us_per_call(
      stream, 20, [&](cudaStream_t s) { config.stream = s; return cudaLaunchKernelEx(&config, kernel, t); }, us));
  return us;
}

}  // namespace

int main(int argc, char** argv) {
  const char* json_path = nullptr;
  if (!parse_json_only(argc, argv, "chain_floor", json_path)) return 2;
  cudaStream_t stream;
  FLOOR_CHECK(cudaStreamCreate(&stream));
  const int h = 128, w = 128;  // 64->64 at 128x128: 128 blocks of 128 pixels
  const size_t pixels = (size_t)h * w;
  __half *input, *offset, *mask, *output;
  FLOOR_CHECK(cudaMalloc(&input, pixels * 64 * sizeof(__half)));
  FLOOR_CHECK(cudaMalloc(&offset, pixels * 18 * sizeof(__half)));
  FLOOR_CHECK(cudaMalloc(&mask, pixels * 9 * sizeof(__half)));
  FLOOR_CHECK(cudaMalloc(&output, pixels * 64 * sizeof(__half)));
  FLOOR_CHECK(cudaMemset(input, 0, pixels * 64 * sizeof(__half)));
  FLOOR_CHECK(cudaMemset(offset, 0, pixels * 18 * sizeof(__half)));
  FLOOR_CHECK(cudaMemset(mask, 0, pixels * 9 * sizeof(__half)));
  const Tensors t{input, offset, mask, output, h, w};
  cudaDeviceProp prop;
  FLOOR_CHECK(cudaGetDeviceProperties(&prop, 0));
  std::FILE* json = json_path ? std::fopen(json_path, "w") : nullptr;
  if (json_path && !json) {
    std::fprintf(stderr, "chain_floor: cannot write %s\n", json_path);
    return 1;
  }
  if (json) std::fprintf(json, "{\"device\": \"%s\", \"rows\": [", prop.name);
  std::printf("# %s: us per launch, graph replay of 20, median of 15\n", prop.name);
  std::printf("| blocks | dynamic shared KB | empty | offsets -> gather -> store |\n|---|---|---|---|\n");
  bool first = true;
  for (int smem : {0, 200 * 1024}) {
    for (int blocks : {16, 64, 128}) {
      const float empty = per_launch_us(empty_kernel, t, blocks, smem, stream);
      const float chain = per_launch_us(chain_kernel, t, blocks, smem, stream);
      std::printf("| %d | %d | %.2f | %.2f |\n", blocks, smem / 1024, empty, chain);
      if (json)
        std::fprintf(json, "%s{\"blocks\": %d, \"smem_kb\": %d, \"empty_us\": %.3f, \"chain_us\": %.3f}", first ? "" : ", ",
                     blocks, smem / 1024, empty, chain);
      first = false;
    }
  }
  if (json) {
    std::fprintf(json, "]}\n");
    std::fclose(json);
  }
  for (void* p : {(void*)input, (void*)offset, (void*)mask, (void*)output}) FLOOR_CHECK(cudaFree(p));
  return 0;
}
