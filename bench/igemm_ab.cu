// A/B timing of the implicit-GEMM kernels without PyTorch (development tool).
//
// Builds against one copy of the kernel headers, so that two copies (say, main's and an
// experiment's) give two binaries that run the same layers in the same process order on
// the same GPU. Each layer's output bytes are hashed: two builds that must not change the
// arithmetic (instruction trims, scheduling, launch attributes) show the same hash.
// Building takes seconds, where bench/igemm_dev.py's PyTorch extension takes minutes.
//
//   nvcc -std=c++17 -O3 -gencode=arch=compute_90a,code=sm_90a -DDCN_IGEMM_WGMMA \
//        -I<dir with modulated_deform_conv.cuh, ..._igemm.cuh, dcn_params.h> bench/igemm_ab.cu -o ab
//   ./ab [--type fp16|bf16|fp32] [--batch N] [--nchw] [--only KEY[,KEY...]]
//        [--tile T --split S] [--pack-per-call] [--json FILE]
//
// Layers: the distinct DLA-34 DCN shapes (bench/dcn_layers.py) at 512x512 and 384x1280
// input, channels-last input and output unless --nchw, packed weights and split-K counters
// kept between calls (as dcn_ext runs them; --pack-per-call: packed into the workspace by
// every call, as trt_plugin's enqueue runs them), each configuration as auto_config picks it
// unless --tile/--split force one (an index of igemm::Tile). KEY is cin-cout-HxW, e.g.
// 64-64-128x128. Time per call: CUDA events over graph replay of 20 calls, median of 15.
// Sums weight each shape by its count among the 16 layers.
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "cuda_tool.h"
#include "modulated_deform_conv.cuh"
#include "modulated_deform_conv_igemm.cuh"

namespace {

#define AB_CHECK(call) BENCH_CUDA_CHECK("igemm_ab", call)

struct Options {
  std::string type = "fp16";
  int batch = 1;
  bool nchw = false;
  std::string only;
  int tile = -1, split = 1;
  bool pack_per_call = false;
  std::string json;
};

struct LayerShape {
  int cin, cout, stride, count;  // stride: the feature map's stride against the input
};
// The 16 DLA-34 DCN layers as (shape, how many): bench/dcn_layers.py's DLA34_LAYERS.
constexpr LayerShape kDla34[] = {{512, 256, 32, 1}, {256, 256, 16, 1}, {256, 128, 16, 2}, {128, 128, 8, 2},
                                 {128, 64, 8, 4},   {64, 64, 4, 5},    {256, 64, 16, 1}};
constexpr int kInputs[][2] = {{512, 512}, {384, 1280}};

unsigned long long fnv1a(const std::vector<unsigned char>& bytes) {
  unsigned long long h = 1469598103934665603ull;
  for (unsigned char b : bytes) {
    h ^= b;
    h *= 1099511628211ull;
  }
  return h;
}

template <typename T>
T from_float(float f);
template <>
__half from_float<__half>(float f) { return __float2half(f); }
template <>
__nv_bfloat16 from_float<__nv_bfloat16>(float f) { return __float2bfloat16(f); }
template <>
float from_float<float>(float f) { return f; }

// A device buffer of n values drawn from `draw`.
template <typename T, typename Draw>
T* device_values(size_t n, Draw draw) {
  std::vector<T> host(n);
  for (T& v : host) v = from_float<T>(draw());
  T* device = nullptr;
  AB_CHECK(cudaMalloc(&device, n * sizeof(T)));
  AB_CHECK(cudaMemcpy(device, host.data(), n * sizeof(T), cudaMemcpyHostToDevice));
  return device;
}

struct Result {
  std::string key;
  int tile, split, count;
  double us;  // < 0: the forced configuration does not apply
  unsigned long long hash;
  bool repeats;
};

template <typename T>
Result run_layer(const Options& o, const LayerShape& l, int in_h, int in_w, cudaStream_t stream) {
  namespace ig = dcn::igemm;
  const int h = in_h / l.stride, w = in_w / l.stride, b = o.batch;
  char key[64];
  std::snprintf(key, sizeof key, "%d-%d-%dx%d", l.cin, l.cout, h, w);
  Result r{key, -1, 0, l.count, -1.0, 0, false};
  const dcn::ConvGeometry g{b, l.cin, h, w, l.cout, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, h, w};
  std::mt19937 rng(1234);
  std::normal_distribution<float> normal(0.f, 1.f), offsets(0.f, 2.f);
  std::uniform_real_distribution<float> unit(0.f, 1.f);
  const size_t pixels = (size_t)b * h * w;
  T* input = device_values<T>(pixels * l.cin, [&] { return normal(rng); });
  T* offset = device_values<T>(pixels * 18, [&] { return offsets(rng); });  // sigma 2 px
  T* mask = device_values<T>(pixels * 9, [&] { return unit(rng); });
  T* weight = device_values<T>((size_t)l.cout * l.cin * 9, [&] { return 0.05f * normal(rng); });
  T* bias = device_values<T>(l.cout, [&] { return normal(rng); });
  T *output = nullptr, *packed = nullptr;
  int* counters = nullptr;
  void* workspace = nullptr;
  const size_t out_bytes = pixels * l.cout * sizeof(T);
  AB_CHECK(cudaMalloc(&output, out_bytes));
  AB_CHECK(cudaMalloc(&packed, dcn::igemm_packed_weight_elements<T>(g) * sizeof(T)));
  AB_CHECK(dcn::launch_igemm_pack_weights<T>(g, weight, packed, stream));
  dcn::ForwardArgs<T> args{input, offset, mask, weight, bias, output, g};
  args.channels_last = !o.nchw;
  args.weight_packed = packed;
  ig::Config config = ig::auto_config<T>(ig::make_shape<T>(args));
  if (o.tile >= 0) config = ig::Config{(ig::Tile)o.tile, o.split};
  r.tile = (int)config.tile;
  r.split = config.split_k;
  const ig::Layout counted = ig::make_layout<T>(ig::make_shape<T>(args), config);
  const int counter_count = counted.tiles_m * counted.tiles_n;
  AB_CHECK(cudaMalloc(&counters, counter_count * sizeof(int)));
  AB_CHECK(cudaMemset(counters, 0, counter_count * sizeof(int)));
  args.split_k_counters = counters;
  if (o.pack_per_call) args.weight_packed = nullptr, args.split_k_counters = nullptr;
  const ig::Layout layout = ig::make_layout<T>(ig::make_shape<T>(args), config);
  AB_CHECK(cudaMalloc(&workspace, layout.total + ig::kAlign));
  const cudaError_t launched = ig::launch_with<T>(args, workspace, stream, config);
  if (launched == cudaSuccess) {
    AB_CHECK(cudaStreamSynchronize(stream));
    std::vector<unsigned char> first(out_bytes), again(out_bytes);
    AB_CHECK(cudaMemcpy(first.data(), output, out_bytes, cudaMemcpyDeviceToHost));
    float us = 0.f;
    AB_CHECK(graph_timing::median_us_per_call(
        stream, 20, [&](cudaStream_t s) { return ig::launch_with<T>(args, workspace, s, config); }, us));
    r.us = us;
    AB_CHECK(cudaMemcpy(again.data(), output, out_bytes, cudaMemcpyDeviceToHost));
    r.hash = fnv1a(first);
    r.repeats = fnv1a(again) == r.hash;
  } else {
    (void)cudaGetLastError();  // a forced configuration that does not apply to this shape
  }
  for (void* p : {(void*)input, (void*)offset, (void*)mask, (void*)weight, (void*)bias, (void*)output,
                  (void*)packed, (void*)counters, workspace})
    AB_CHECK(cudaFree(p));
  return r;
}

template <typename T>
int run(const Options& o) {
  cudaStream_t stream;
  AB_CHECK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  cudaDeviceProp prop;
  AB_CHECK(cudaGetDeviceProperties(&prop, 0));
  std::printf("# %s, %s, batch %d, %s%s\n", prop.name, o.type.c_str(), o.batch, o.nchw ? "NCHW" : "channels-last",
              o.pack_per_call ? ", weights packed by every call" : "");
  std::printf("%-16s %4s %5s %10s  %-16s %s\n", "layer", "tile", "split", "us", "output hash", "count");
  std::FILE* json = o.json.empty() ? nullptr : std::fopen(o.json.c_str(), "w");
  if (!o.json.empty() && json == nullptr) {
    std::fprintf(stderr, "igemm_ab: cannot write %s\n", o.json.c_str());
    return 1;
  }
  if (json)
    std::fprintf(json, "{\"device\": \"%s\", \"type\": \"%s\", \"batch\": %d, \"nchw\": %s, \"pack_per_call\": %s, "
                 "\"layers\": [", prop.name, o.type.c_str(), o.batch, o.nchw ? "true" : "false",
                 o.pack_per_call ? "true" : "false");
  bool first_json = true;
  for (const auto& input : kInputs) {
    double sum = 0.0;
    bool complete = true;
    for (const LayerShape& l : kDla34) {
      char key[64];
      std::snprintf(key, sizeof key, "%d-%d-%dx%d", l.cin, l.cout, input[0] / l.stride, input[1] / l.stride);
      if (!o.only.empty() && ("," + o.only + ",").find("," + std::string(key) + ",") == std::string::npos) {
        complete = false;
        continue;
      }
      const Result r = run_layer<T>(o, l, input[0], input[1], stream);
      if (r.us < 0) {
        std::printf("%-16s %4d %5d %10s\n", r.key.c_str(), r.tile, r.split, "n/a");
        complete = false;
        continue;
      }
      sum += r.us * r.count;
      std::printf("%-16s %4d %5d %10.2f  %016llx x%d%s\n", r.key.c_str(), r.tile, r.split, r.us, r.hash, r.count,
                  r.repeats ? "" : "  (output differs on replay)");
      if (json) {
        std::fprintf(json, "%s{\"layer\": \"%s\", \"tile\": %d, \"split\": %d, \"us\": %.3f, \"hash\": \"%016llx\", "
                     "\"count\": %d, \"repeats\": %s}", first_json ? "" : ", ", r.key.c_str(), r.tile, r.split, r.us,
                     r.hash, r.count, r.repeats ? "true" : "false");
        first_json = false;
      }
    }
    if (complete) std::printf("sum of the 16 layers at %dx%d: %.1f us\n", input[0], input[1], sum);
  }
  if (json) {
    std::fprintf(json, "]}\n");
    std::fclose(json);
  }
  AB_CHECK(cudaStreamDestroy(stream));
  return 0;
}

int usage(const char* why) {
  std::fprintf(stderr, "igemm_ab: %s\nusage: igemm_ab [--type fp16|bf16|fp32] [--batch N] [--nchw] "
               "[--only KEY,...] [--tile T --split S] [--pack-per-call] [--json FILE]\n", why);
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&]() -> const char* { return i + 1 < argc ? argv[++i] : nullptr; };
    const char* v = nullptr;
    if (a == "--nchw") {
      o.nchw = true;
    } else if (a == "--pack-per-call") {
      o.pack_per_call = true;
    } else if (a == "--type" || a == "--batch" || a == "--only" || a == "--tile" || a == "--split" || a == "--json") {
      if ((v = value()) == nullptr) return usage(("missing value for " + a).c_str());
      if (a == "--type") o.type = v;
      if (a == "--batch") o.batch = std::atoi(v);
      if (a == "--only") o.only = v;
      if (a == "--tile") o.tile = std::atoi(v);
      if (a == "--split") o.split = std::atoi(v);
      if (a == "--json") o.json = v;
    } else {
      return usage(("unknown argument " + a).c_str());
    }
  }
  if (o.batch < 1) return usage("--batch must be at least 1");
  if (o.tile >= dcn::igemm::kTileCount || o.split < 1) return usage("--tile must name a Tile, --split be at least 1");
  if (o.type == "fp16") return run<__half>(o);
  if (o.type == "bf16") return run<__nv_bfloat16>(o);
  if (o.type == "fp32") return run<float>(o);
  return usage(("unknown --type " + o.type).c_str());
}
