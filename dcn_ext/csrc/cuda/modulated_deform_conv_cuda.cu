// CUDA host: checks, device guard, current stream, dtype dispatch and error checks around
// the framework-free kernels of kernels/modulated_deform_conv.cuh (the header trt_plugin
// shares). Backward uses at::bmm for its matrix products; forward never needs cuBLAS.
#include <c10/cuda/CUDAGraphsC10Utils.h>
#include <c10/cuda/CUDAStream.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include <mutex>
#include <optional>
#include <unordered_map>
#include <utility>
#include <vector>

#include "../kernels/modulated_deform_conv.cuh"
#include "../modulated_deform_conv.h"

namespace dcn_ext {
namespace {

// ATen's element types and the CUDA types the kernels take (same bits).
template <typename T>
struct CudaType {
  using type = T;
};
template <>
struct CudaType<at::Half> {
  using type = __half;
};
template <>
struct CudaType<at::BFloat16> {
  using type = __nv_bfloat16;
};

template <typename scalar_t>
const typename CudaType<scalar_t>::type* device_ptr(const at::Tensor& t) {
  return reinterpret_cast<const typename CudaType<scalar_t>::type*>(t.data_ptr<scalar_t>());
}

void check_cuda_error(cudaError_t status, const char* what) {
  TORCH_CHECK(status == cudaSuccess, what, " failed: ", cudaGetErrorString(status));
}

// Per (weight, stream): the weights packed for the implicit GEMM and its split-K tile
// counters (zero at rest), so that a call runs the GEMM alone instead of repacking the
// weights and zeroing counters first. An entry is used only while the weight tensor is
// alive, unmodified (same version counter, storage, dtype and sizes) and the call is on
// the stream that packed it (no cross-stream ordering to get wrong); otherwise it is
// rebuilt. Inference tensors (no version counter) and calls under CUDA-graph capture
// whose entry is missing or stale pack into the workspace as before, without caching.
struct ResidentEntry {
  // optional: weak_intrusive_ptr has no empty state of its own
  std::optional<c10::weak_intrusive_ptr<c10::TensorImpl, c10::UndefinedTensorImpl>> weight;
  int64_t version = 0;
  const void* data = nullptr;
  at::ScalarType dtype = at::kFloat;
  std::vector<int64_t> sizes;
  int64_t deformable_groups = 0;
  at::Tensor packed;
  at::Tensor counters;  // int32, zero at rest
};

struct ResidentKey {
  const c10::TensorImpl* weight;
  cudaStream_t stream;
  bool operator==(const ResidentKey& o) const { return weight == o.weight && stream == o.stream; }
};
struct ResidentKeyHash {
  size_t operator()(const ResidentKey& k) const {
    return std::hash<const void*>()(k.weight) ^ (std::hash<const void*>()(k.stream) << 1);
  }
};

std::mutex resident_mutex;
std::unordered_map<ResidentKey, ResidentEntry, ResidentKeyHash> resident_cache;

bool entry_matches(const ResidentEntry& e, const at::Tensor& weight, int64_t deformable_groups) {
  return e.weight.has_value() && !e.weight->expired() && e.version == weight._version() &&
         e.data == weight.data_ptr() && e.dtype == weight.scalar_type() &&
         e.sizes == weight.sizes().vec() && e.deformable_groups == deformable_groups;
}

// Fills args.weight_packed / args.split_k_counters from the cache (building the entry
// outside graph capture); leaves them null where the workspace must serve.
template <typename T>
void use_resident(dcn::ForwardArgs<T>& args, const at::Tensor& weight, int64_t deformable_groups,
                  cudaStream_t stream) {
  if (weight.is_inference()) return;
  const bool capturing = c10::cuda::currentStreamCaptureStatusMayInitCtx() != c10::cuda::CaptureStatus::None;
  const int counters_needed = dcn::igemm_counter_count<T>(args.geometry);
  std::lock_guard<std::mutex> lock(resident_mutex);
  const ResidentKey key{weight.unsafeGetTensorImpl(), stream};
  auto it = resident_cache.find(key);
  if (it == resident_cache.end() || !entry_matches(it->second, weight, deformable_groups)) {
    if (capturing) return;
    for (auto e = resident_cache.begin(); e != resident_cache.end();) {  // drop dead weights
      e = !e->second.weight.has_value() || e->second.weight->expired() ? resident_cache.erase(e) : std::next(e);
    }
    ResidentEntry entry;
    entry.weight.emplace(weight.getIntrusivePtr());
    entry.version = weight._version();
    entry.data = weight.data_ptr();
    entry.dtype = weight.scalar_type();
    entry.sizes = weight.sizes().vec();
    entry.deformable_groups = deformable_groups;
    entry.packed = at::empty({static_cast<int64_t>(dcn::igemm_packed_weight_elements<T>(args.geometry))},
                             weight.options());
    check_cuda_error(dcn::launch_igemm_pack_weights<T>(
                         args.geometry, args.weight, reinterpret_cast<T*>(entry.packed.data_ptr()), stream),
                     "modulated_deform_conv2d weight packing");
    it = resident_cache.insert_or_assign(key, std::move(entry)).first;
  }
  ResidentEntry& entry = it->second;
  args.weight_packed = reinterpret_cast<const T*>(entry.packed.data_ptr());
  if (counters_needed > 0) {
    if (!entry.counters.defined() || entry.counters.numel() < counters_needed) {
      if (capturing) return;  // the workspace's counters, zeroed by the prepare kernel
      entry.counters = at::zeros({counters_needed}, weight.options().dtype(at::kInt));
    }
    args.split_k_counters = entry.counters.data_ptr<int>();
  }
}

at::Tensor forward_cuda_impl(const at::Tensor& input, const at::Tensor& offset,
                             const at::Tensor& mask, const at::Tensor& weight,
                             const std::optional<at::Tensor>& bias, at::IntArrayRef stride,
                             at::IntArrayRef padding, at::IntArrayRef dilation, int64_t groups,
                             int64_t deformable_groups, dcn::ForwardAlgorithm algorithm) {
  const dcn::ConvGeometry g = check_arguments(input, offset, mask, weight, bias, stride,
                                              padding, dilation, groups, deformable_groups);
  const c10::cuda::CUDAGuard device_guard(input.device());
  const at::Tensor offset_c = offset.contiguous();
  const at::Tensor mask_c = mask.contiguous();
  const at::Tensor weight_c = weight.contiguous();
  const bool has_bias = bias.has_value() && bias->defined();
  const at::Tensor bias_c = has_bias ? bias->contiguous() : at::Tensor();
  const bool channels_last = is_channels_last(input);
  at::Tensor output = at::empty({g.batch, g.out_channels, g.out_height, g.out_width},
                                input.options().memory_format(output_memory_format(input)));
  if (output.numel() == 0) return output;
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();

  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, input.scalar_type(), "modulated_deform_conv2d_cuda", [&] {
        using T = typename CudaType<scalar_t>::type;
        bool igemm = false, native_channels_last = false;
        if constexpr (dcn::igemm_candidate<T>()) {
          igemm = algorithm == dcn::ForwardAlgorithm::kImplicitGemm ||
                  (algorithm == dcn::ForwardAlgorithm::kAuto && dcn::igemm_supported<T>(g));
          native_channels_last = igemm && channels_last && dcn::igemm_channels_last_supported<T>(g);
        }
        // Channels-last input the kernel cannot read as is goes through NCHW and back.
        const at::Tensor input_c = native_channels_last ? input : input.contiguous();
        at::Tensor output_k = native_channels_last || !channels_last ? output : at::empty_like(output, at::MemoryFormat::Contiguous);
        dcn::ForwardArgs<T> args{};
        args.input = device_ptr<scalar_t>(input_c);
        args.offset = device_ptr<scalar_t>(offset_c);
        args.mask = device_ptr<scalar_t>(mask_c);
        args.weight = device_ptr<scalar_t>(weight_c);
        args.bias = has_bias ? device_ptr<scalar_t>(bias_c) : nullptr;
        args.output = reinterpret_cast<T*>(output_k.data_ptr<scalar_t>());
        args.geometry = g;
        args.channels_last = native_channels_last;
        if constexpr (dcn::igemm_candidate<T>()) {
          if (igemm && dcn::igemm_supported<T>(g)) use_resident<T>(args, weight_c, deformable_groups, stream);
        }
        const size_t workspace_bytes = dcn::forward_workspace_bytes<T>(args, algorithm);
        at::Tensor workspace;
        if (workspace_bytes > 0) {
          workspace = at::empty({static_cast<int64_t>(workspace_bytes)},
                                input_c.options().dtype(at::kByte));
        }
        check_cuda_error(
            dcn::launch_forward<T>(args, workspace_bytes > 0 ? workspace.data_ptr() : nullptr,
                                   stream, algorithm),
            "modulated_deform_conv2d forward kernel");
        if (!output_k.is_same(output)) output.copy_(output_k);
      });
  return output;
}

at::Tensor forward_cuda(const at::Tensor& input, const at::Tensor& offset,
                        const at::Tensor& mask, const at::Tensor& weight,
                        const std::optional<at::Tensor>& bias, at::IntArrayRef stride,
                        at::IntArrayRef padding, at::IntArrayRef dilation, int64_t groups,
                        int64_t deformable_groups) {
  return forward_cuda_impl(input, offset, mask, weight, bias, stride, padding, dilation, groups,
                           deformable_groups, dcn::ForwardAlgorithm::kAuto);
}

at::Tensor forward_with_algorithm_cuda(const at::Tensor& input, const at::Tensor& offset,
                                       const at::Tensor& mask, const at::Tensor& weight,
                                       const std::optional<at::Tensor>& bias,
                                       at::IntArrayRef stride, at::IntArrayRef padding,
                                       at::IntArrayRef dilation, int64_t groups,
                                       int64_t deformable_groups, int64_t algorithm) {
  TORCH_CHECK_VALUE(algorithm >= 0 && algorithm <= 2, "algorithm is not valid: got: ",
                    algorithm, " expected: 0 (auto), 1 (simple) or 2 (implicit GEMM)");
  return forward_cuda_impl(input, offset, mask, weight, bias, stride, padding, dilation, groups,
                           deformable_groups, static_cast<dcn::ForwardAlgorithm>(algorithm));
}

GradTuple backward_cuda(const at::Tensor& grad_output, const at::Tensor& input,
                        const at::Tensor& offset, const at::Tensor& mask,
                        const at::Tensor& weight, const std::optional<at::Tensor>& bias,
                        at::IntArrayRef stride, at::IntArrayRef padding,
                        at::IntArrayRef dilation, int64_t groups, int64_t deformable_groups) {
  const c10::cuda::CUDAGuard device_guard(input.device());
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  return backward_through_columns(
      grad_output, input, offset, mask, weight, bias, stride, padding, dilation, groups,
      deformable_groups,
      [stream](const dcn::ConvGeometry& g, const at::Tensor& input_n,
               const at::Tensor& offset_n, const at::Tensor& mask_n, at::Tensor& columns) {
        AT_DISPATCH_FLOATING_TYPES(input_n.scalar_type(), "modulated_deform_im2col_cuda", [&] {
          check_cuda_error(
              dcn::launch_im2col<scalar_t>(
                  input_n.data_ptr<scalar_t>(), offset_n.data_ptr<scalar_t>(),
                  mask_n.data_ptr<scalar_t>(), g, columns.data_ptr<scalar_t>(), stream),
              "modulated_deform_conv2d im2col kernel");
        });
      },
      [stream](const dcn::ConvGeometry& g, const at::Tensor& grad_columns,
               const at::Tensor& input_n, const at::Tensor& offset_n, const at::Tensor& mask_n,
               at::Tensor grad_input_n, at::Tensor grad_offset_n, at::Tensor grad_mask_n) {
        AT_DISPATCH_FLOATING_TYPES(input_n.scalar_type(), "modulated_deform_col2im_cuda", [&] {
          check_cuda_error(
              dcn::launch_col2im<scalar_t>(
                  grad_columns.data_ptr<scalar_t>(), input_n.data_ptr<scalar_t>(),
                  offset_n.data_ptr<scalar_t>(), mask_n.data_ptr<scalar_t>(), g,
                  grad_input_n.data_ptr<scalar_t>(), grad_offset_n.data_ptr<scalar_t>(),
                  grad_mask_n.data_ptr<scalar_t>(), stream),
              "modulated_deform_conv2d col2im kernel");
        });
      });
}

}  // namespace
}  // namespace dcn_ext

DCN_TORCH_LIBRARY_IMPL(DCN_TORCH_NAMESPACE, CUDA, m) {
  m.impl(DCN_OP_NAME, TORCH_FN(dcn_ext::forward_cuda));
  m.impl(DCN_BACKWARD_OP_NAME, TORCH_FN(dcn_ext::backward_cuda));
  m.impl(DCN_WITH_ALGORITHM_OP_NAME, TORCH_FN(dcn_ext::forward_with_algorithm_cuda));
}
