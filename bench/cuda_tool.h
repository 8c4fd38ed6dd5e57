// What the standalone CUDA tools in bench/ (igemm_ab, chain_floor, texture_probe) share:
// exiting on a failed CUDA call, the probes' `--json FILE` argument line, and GPU time per
// call as bench_dcn measures it (`calls` back-to-back
// calls captured in one CUDA graph, three warm-up replays, then the median of 15 replays
// timed by CUDA events, divided by `calls`).
#pragma once

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

#include <cuda_runtime.h>

// Exits with the failed call and CUDA's message, prefixed by the tool's name.
#define BENCH_CUDA_CHECK(tool, call)                                                      \
  do {                                                                                    \
    const cudaError_t e_ = (call);                                                        \
    if (e_ != cudaSuccess) {                                                              \
      std::fprintf(stderr, "%s: %s failed: %s\n", tool, #call, cudaGetErrorString(e_));   \
      std::exit(1);                                                                       \
    }                                                                                     \
  } while (0)

// The argument line of a probe that takes only `--json FILE`: sets json_path (or leaves it
// null) and returns true, or prints the usage and returns false; no CUDA call is made.
inline bool parse_json_only(int argc, char** argv, const char* tool, const char*& json_path) {
  json_path = nullptr;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--json") == 0 && i + 1 < argc) {
      json_path = argv[++i];
    } else {
      std::fprintf(stderr, "usage: %s [--json FILE]\n", tool);
      return false;
    }
  }
  return true;
}

namespace graph_timing {

// `enqueue(stream)` issues one call on `stream` and returns its launch error. The first
// CUDA error ends the timing and is returned (a failed call also ends the capture).
template <typename Enqueue>
cudaError_t median_us_per_call(cudaStream_t stream, int calls, Enqueue enqueue, float& us) {
  cudaGraph_t graph = nullptr;
  cudaGraphExec_t exec = nullptr;
  cudaEvent_t start = nullptr, stop = nullptr;
  cudaError_t err = cudaStreamBeginCapture(stream, cudaStreamCaptureModeGlobal);
  for (int i = 0; err == cudaSuccess && i < calls; ++i) err = enqueue(stream);
  const cudaError_t captured = cudaStreamEndCapture(stream, &graph);
  if (err == cudaSuccess) err = captured;
  if (err == cudaSuccess) err = cudaGraphInstantiate(&exec, graph, 0);
  if (err == cudaSuccess) err = cudaEventCreate(&start);
  if (err == cudaSuccess) err = cudaEventCreate(&stop);
  for (int i = 0; err == cudaSuccess && i < 3; ++i) err = cudaGraphLaunch(exec, stream);  // warm-up
  std::vector<float> per_call;
  for (int rep = 0; err == cudaSuccess && rep < 15; ++rep) {
    float ms = 0.f;
    err = cudaEventRecord(start, stream);
    if (err == cudaSuccess) err = cudaGraphLaunch(exec, stream);
    if (err == cudaSuccess) err = cudaEventRecord(stop, stream);
    if (err == cudaSuccess) err = cudaEventSynchronize(stop);
    if (err == cudaSuccess) err = cudaEventElapsedTime(&ms, start, stop);
    per_call.push_back(ms * 1000.f / (float)calls);
  }
  if (err == cudaSuccess) {
    std::sort(per_call.begin(), per_call.end());
    us = per_call[per_call.size() / 2];
  }
  if (start) cudaEventDestroy(start);
  if (stop) cudaEventDestroy(stop);
  if (exec) cudaGraphExecDestroy(exec);
  if (graph) cudaGraphDestroy(graph);
  return err;
}

}  // namespace graph_timing
