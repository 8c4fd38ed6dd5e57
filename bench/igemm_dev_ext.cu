// Development binding of the implicit-GEMM forward for torch tensors, built on the GPU
// machine with torch.utils.cpp_extension.load (see bench/igemm_dev.py). It lets the
// benchmark force a block shape and split-K, which the real op (dcn_ext) never does.
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/extension.h>

#include "../dcn_ext/csrc/kernels/modulated_deform_conv_igemm.cuh"

namespace {

dcn::ConvGeometry geometry_of(const torch::Tensor& input, const torch::Tensor& weight,
                              const torch::Tensor& offset, int64_t stride, int64_t pad,
                              int64_t dilation, int64_t deformable_groups) {
  dcn::ConvGeometry g{};
  g.batch = (int)input.size(0);
  g.in_channels = (int)input.size(1);
  g.height = (int)input.size(2);
  g.width = (int)input.size(3);
  g.out_channels = (int)weight.size(0);
  g.kernel_h = (int)weight.size(2);
  g.kernel_w = (int)weight.size(3);
  g.stride_h = g.stride_w = (int)stride;
  g.pad_h = g.pad_w = (int)pad;
  g.dilation_h = g.dilation_w = (int)dilation;
  g.groups = 1;
  g.deformable_groups = (int)deformable_groups;
  g.out_height = (int)offset.size(2);
  g.out_width = (int)offset.size(3);
  return g;
}

// A forced configuration: tile numbers from 100 up are tile - 100 with the split-K slices'
// shared reduction turned off (the last slice sums them all), for A/B runs.
dcn::igemm::Config config_of(int64_t tile, int64_t split) {
  dcn::igemm::Config c{(dcn::igemm::Tile)(tile % 100), (int)split};
  c.shared_reduction = tile < 100;
  return c;
}

template <typename T>
void run(const torch::Tensor& input, const torch::Tensor& offset, const torch::Tensor& mask,
         const torch::Tensor& weight, const c10::optional<torch::Tensor>& bias, torch::Tensor& out,
         torch::Tensor& workspace, const dcn::ConvGeometry& g, int64_t tile, int64_t split,
         const c10::optional<torch::Tensor>& packed, const c10::optional<torch::Tensor>& counters) {
  dcn::ForwardArgs<T> a{};
  // As dcn_ext: a channels-last input is read in place, packed weights and zeroed split-K
  // counters may be kept by the caller.
  a.channels_last = !input.is_contiguous() && input.is_contiguous(at::MemoryFormat::ChannelsLast);
  if (packed.has_value()) a.weight_packed = reinterpret_cast<const T*>(packed->data_ptr());
  if (counters.has_value()) a.split_k_counters = counters->data_ptr<int>();
  a.input = reinterpret_cast<const T*>(input.data_ptr());
  a.offset = reinterpret_cast<const T*>(offset.data_ptr());
  a.mask = reinterpret_cast<const T*>(mask.data_ptr());
  a.weight = reinterpret_cast<const T*>(weight.data_ptr());
  a.bias = bias.has_value() ? reinterpret_cast<const T*>(bias->data_ptr()) : nullptr;
  a.output = reinterpret_cast<T*>(out.data_ptr());
  a.geometry = g;
  cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  cudaError_t err;
  if (tile < 0) {
    TORCH_CHECK((size_t)workspace.numel() >= dcn::igemm_workspace_bytes<T>(a), "workspace too small");
    err = dcn::launch_igemm_forward<T>(a, workspace.data_ptr(), stream);
  } else {
    const dcn::igemm::Config c = config_of(tile, split);
    TORCH_CHECK((size_t)workspace.numel() >= dcn::igemm::workspace_bytes_for<T>(a, c), "workspace too small");
    err = dcn::igemm::launch_with<T>(a, workspace.data_ptr(), stream, c);
  }
  TORCH_CHECK(err == cudaSuccess, "launch_igemm_forward: ", cudaGetErrorString(err));
}

template <typename F>
auto dispatch(at::ScalarType t, F f) {
#ifdef DCN_DEV_HALF_ONLY  // quicker builds for fp16-only measurements
  TORCH_CHECK(t == at::kHalf, "this build has fp16 only");
  return f(__half{});
#endif
  if (t == at::kFloat) return f(float{});
  if (t == at::kHalf) return f(__half{});
  TORCH_CHECK(t == at::kBFloat16, "dtype");
  return f(__nv_bfloat16{});
}

}  // namespace

// The packed weights of `weight` for the auto configuration (caller-kept, as dcn_ext does).
torch::Tensor pack_weights(torch::Tensor input, torch::Tensor offset, torch::Tensor weight, int64_t stride,
                           int64_t pad, int64_t dilation, int64_t dg) {
  const auto g = geometry_of(input, weight, offset, stride, pad, dilation, dg);
  return dispatch(input.scalar_type(), [&](auto tag) -> torch::Tensor {
    using T = decltype(tag);
    auto packed = torch::empty({(int64_t)dcn::igemm_packed_weight_elements<T>(g)}, weight.options());
    auto w = weight.contiguous();
    const cudaError_t err = dcn::launch_igemm_pack_weights<T>(g, reinterpret_cast<const T*>(w.data_ptr()),
                                                              reinterpret_cast<T*>(packed.data_ptr()),
                                                              at::cuda::getCurrentCUDAStream());
    TORCH_CHECK(err == cudaSuccess, "launch_igemm_pack_weights: ", cudaGetErrorString(err));
    return packed;
  });
}

int64_t workspace_bytes(torch::Tensor input, torch::Tensor offset, torch::Tensor weight, int64_t stride,
                        int64_t pad, int64_t dilation, int64_t dg, int64_t tile, int64_t split) {
  const auto g = geometry_of(input, weight, offset, stride, pad, dilation, dg);
  return dispatch(input.scalar_type(), [&](auto tag) -> int64_t {
    using T = decltype(tag);
    if (tile < 0) return (int64_t)dcn::igemm_workspace_bytes<T>(g);
    return (int64_t)dcn::igemm::workspace_bytes_for<T>(g, config_of(tile, split));
  });
}

std::vector<int64_t> auto_config(torch::Tensor input, torch::Tensor offset, torch::Tensor weight, int64_t stride,
                                 int64_t pad, int64_t dilation, int64_t dg) {
  const auto g = geometry_of(input, weight, offset, stride, pad, dilation, dg);
  return dispatch(input.scalar_type(), [&](auto tag) -> std::vector<int64_t> {
    using T = decltype(tag);
    const auto s = dcn::igemm::make_shape<T>(g);
    const auto c = dcn::igemm::auto_config<T>(s);
    return {(int64_t)c.tile, (int64_t)c.split_k, (int64_t)s.k_steps};
  });
}

torch::Tensor forward(torch::Tensor input, torch::Tensor offset, torch::Tensor mask, torch::Tensor weight,
                      c10::optional<torch::Tensor> bias, torch::Tensor workspace, int64_t stride, int64_t pad,
                      int64_t dilation, int64_t dg, int64_t tile, int64_t split,
                      c10::optional<torch::Tensor> packed, c10::optional<torch::Tensor> counters) {
  c10::cuda::CUDAGuard guard(input.device());
  const auto g = geometry_of(input, weight, offset, stride, pad, dilation, dg);
  const bool channels_last = !input.is_contiguous() && input.is_contiguous(at::MemoryFormat::ChannelsLast);
  auto out = torch::empty({g.batch, g.out_channels, g.out_height, g.out_width},
                          input.options().memory_format(channels_last ? at::MemoryFormat::ChannelsLast
                                                                      : at::MemoryFormat::Contiguous));
  dispatch(input.scalar_type(), [&](auto tag) {
    using T = decltype(tag);
    run<T>(channels_last ? input : input.contiguous(), offset.contiguous(), mask.contiguous(), weight.contiguous(),
           bias, out, workspace, g, tile, split, packed, counters);
    return 0;
  });
  return out;
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("forward", &forward);
  m.def("workspace_bytes", &workspace_bytes);
  m.def("pack_weights", &pack_weights);
  m.def("auto_config", &auto_config);
}
