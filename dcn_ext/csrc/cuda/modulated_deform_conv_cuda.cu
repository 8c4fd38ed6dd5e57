// CUDA host: checks, device guard, current stream, dtype dispatch and error checks around
// the framework-free kernels of kernels/modulated_deform_conv.cuh (the header trt_plugin
// shares). Backward uses at::bmm for its matrix products; forward never needs cuBLAS.
#include <c10/cuda/CUDAStream.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

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

at::Tensor forward_cuda_impl(const at::Tensor& input, const at::Tensor& offset,
                             const at::Tensor& mask, const at::Tensor& weight,
                             const std::optional<at::Tensor>& bias, at::IntArrayRef stride,
                             at::IntArrayRef padding, at::IntArrayRef dilation, int64_t groups,
                             int64_t deformable_groups, dcn::ForwardAlgorithm algorithm) {
  const dcn::ConvGeometry g = check_arguments(input, offset, mask, weight, bias, stride,
                                              padding, dilation, groups, deformable_groups);
  const c10::cuda::CUDAGuard device_guard(input.device());
  const at::Tensor input_c = input.contiguous();
  const at::Tensor offset_c = offset.contiguous();
  const at::Tensor mask_c = mask.contiguous();
  const at::Tensor weight_c = weight.contiguous();
  const bool has_bias = bias.has_value() && bias->defined();
  const at::Tensor bias_c = has_bias ? bias->contiguous() : at::Tensor();
  at::Tensor output = at::empty({g.batch, g.out_channels, g.out_height, g.out_width},
                                input_c.options());
  if (output.numel() == 0) return output;
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();

  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, input.scalar_type(), "modulated_deform_conv2d_cuda", [&] {
        using T = typename CudaType<scalar_t>::type;
        dcn::ForwardArgs<T> args{};
        args.input = device_ptr<scalar_t>(input_c);
        args.offset = device_ptr<scalar_t>(offset_c);
        args.mask = device_ptr<scalar_t>(mask_c);
        args.weight = device_ptr<scalar_t>(weight_c);
        args.bias = has_bias ? device_ptr<scalar_t>(bias_c) : nullptr;
        args.output = reinterpret_cast<T*>(output.data_ptr<scalar_t>());
        args.geometry = g;
        const size_t workspace_bytes = dcn::forward_workspace_bytes<T>(g, algorithm);
        at::Tensor workspace;
        if (workspace_bytes > 0) {
          workspace = at::empty({static_cast<int64_t>(workspace_bytes)},
                                input_c.options().dtype(at::kByte));
        }
        check_cuda_error(
            dcn::launch_forward<T>(args, workspace_bytes > 0 ? workspace.data_ptr() : nullptr,
                                   stream, algorithm),
            "modulated_deform_conv2d forward kernel");
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
