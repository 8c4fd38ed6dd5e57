// ATen-side declarations shared by the op registration and the CPU and CUDA backends.
#pragma once

#include <ATen/ATen.h>

#include <optional>
#include <tuple>

#include "kernels/dcn_params.h"

// The op namespace and name come from dcn_ext/contract.json; setup.py passes them as
// -DDCN_TORCH_NAMESPACE=... -DDCN_TORCH_OP=... so the contract stays the only spelling.
#ifndef DCN_TORCH_NAMESPACE
#error "DCN_TORCH_NAMESPACE must be defined (setup.py reads it from contract.json)"
#endif
#ifndef DCN_TORCH_OP
#error "DCN_TORCH_OP must be defined (setup.py reads it from contract.json)"
#endif

#define DCN_STRINGIFY_(x) #x
#define DCN_STRINGIFY(x) DCN_STRINGIFY_(x)
#define DCN_OP_NAME DCN_STRINGIFY(DCN_TORCH_OP)
#define DCN_BACKWARD_OP_NAME DCN_STRINGIFY(DCN_TORCH_OP) "_backward"
#define DCN_WITH_ALGORITHM_OP_NAME DCN_STRINGIFY(DCN_TORCH_OP) "_with_algorithm"
// TORCH_LIBRARY pastes its namespace token, which would stop a macro from expanding:
// going through one more macro expands DCN_TORCH_NAMESPACE first.
#define DCN_TORCH_LIBRARY(ns, m) TORCH_LIBRARY(ns, m)
#define DCN_TORCH_LIBRARY_IMPL(ns, key, m) TORCH_LIBRARY_IMPL(ns, key, m)

namespace dcn_ext {

using GradTuple = std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor>;

// Validates every argument (ranks, shapes, groups, dtypes, devices) and returns the
// geometry. Errors are ValueError with "<argument> is not valid: got: ... expected: ...".
dcn::ConvGeometry check_arguments(const at::Tensor& input, const at::Tensor& offset,
                                  const at::Tensor& mask, const at::Tensor& weight,
                                  const std::optional<at::Tensor>& bias, at::IntArrayRef stride,
                                  at::IntArrayRef padding, at::IntArrayRef dilation,
                                  int64_t groups, int64_t deformable_groups);

// Also checks grad_output against the output shape.
void check_grad_output(const at::Tensor& grad_output, const at::Tensor& input,
                       const dcn::ConvGeometry& geometry);

// The output's layout follows the input's: channels-last when the input is channels-last
// (and not also plain contiguous, as a 1x1 or single-channel tensor is), NCHW otherwise.
// The fake kernel (dcn_ext/ops.py) applies the same rule.
inline bool is_channels_last(const at::Tensor& t) {
  return t.dim() == 4 && !t.is_contiguous() && t.is_contiguous(at::MemoryFormat::ChannelsLast);
}
inline at::MemoryFormat output_memory_format(const at::Tensor& input) {
  return is_channels_last(input) ? at::MemoryFormat::ChannelsLast : at::MemoryFormat::Contiguous;
}

// float for half/bfloat16 (backward and the CPU kernels compute in it), else unchanged.
inline at::ScalarType compute_dtype(at::ScalarType dtype) {
  return (dtype == at::kHalf || dtype == at::kBFloat16) ? at::kFloat : dtype;
}

// Backward through columns, shared by both backends; they differ only in how one image's
// columns are built (im2col) and scattered back (col2im). Checks the arguments; the
// callbacks get contiguous tensors of compute_dtype, already indexed to image n:
//   im2col(geometry, input_n, offset_n, mask_n, columns[C*K, L])
//   col2im(geometry, grad_columns[C*K, L], input_n, offset_n, mask_n,
//          grad_input_n (accumulate into zeros), grad_offset_n, grad_mask_n (overwrite))
template <typename Im2col, typename Col2im>
GradTuple backward_through_columns(const at::Tensor& grad_output, const at::Tensor& input,
                                   const at::Tensor& offset, const at::Tensor& mask,
                                   const at::Tensor& weight,
                                   const std::optional<at::Tensor>& bias,
                                   at::IntArrayRef stride, at::IntArrayRef padding,
                                   at::IntArrayRef dilation, int64_t groups,
                                   int64_t deformable_groups, Im2col&& im2col,
                                   Col2im&& col2im) {
  const dcn::ConvGeometry g = check_arguments(input, offset, mask, weight, bias, stride,
                                              padding, dilation, groups, deformable_groups);
  check_grad_output(grad_output, input, g);
  const auto dtype = compute_dtype(input.scalar_type());
  const at::Tensor input_c = input.to(dtype).contiguous();
  const at::Tensor offset_c = offset.to(dtype).contiguous();
  const at::Tensor mask_c = mask.to(dtype).contiguous();
  const at::Tensor grad_out_c = grad_output.to(dtype).contiguous();
  const at::Tensor weight_c = weight.to(dtype).contiguous();
  const int64_t taps = static_cast<int64_t>(g.kernel_h) * g.kernel_w;
  const int64_t length = static_cast<int64_t>(g.out_height) * g.out_width;
  const int64_t out_per_group = g.out_channels / g.groups;
  const int64_t in_per_group = g.in_channels / g.groups;

  at::Tensor grad_input = at::zeros_like(input_c);
  at::Tensor grad_offset = at::zeros_like(offset_c);
  at::Tensor grad_mask = at::zeros_like(mask_c);
  at::Tensor grad_weight = at::zeros_like(weight_c);
  const at::Tensor weight_groups = weight_c.view({g.groups, out_per_group, in_per_group * taps});
  at::Tensor grad_weight_groups = grad_weight.view({g.groups, out_per_group, in_per_group * taps});
  at::Tensor columns = at::empty({g.in_channels * taps, length}, input_c.options());

  for (int64_t n = 0; n < g.batch; ++n) {
    im2col(g, input_c[n], offset_c[n], mask_c[n], columns);
    const at::Tensor grad_out_n = grad_out_c[n].view({g.groups, out_per_group, length});
    const at::Tensor column_groups = columns.view({g.groups, in_per_group * taps, length});
    grad_weight_groups.baddbmm_(grad_out_n, column_groups.transpose(1, 2));
    const at::Tensor grad_columns =
        at::bmm(weight_groups.transpose(1, 2), grad_out_n).view({g.in_channels * taps, length});
    col2im(g, grad_columns, input_c[n], offset_c[n], mask_c[n], grad_input[n], grad_offset[n],
           grad_mask[n]);
  }
  const bool has_bias = bias.has_value() && bias->defined();
  at::Tensor grad_bias = has_bias ? grad_out_c.sum({0, 2, 3})
                                  : at::zeros({0}, grad_out_c.options());
  const auto out_dtype = input.scalar_type();
  return {grad_input.to(out_dtype), grad_offset.to(out_dtype), grad_mask.to(out_dtype),
          grad_weight.to(out_dtype), grad_bias.to(out_dtype)};
}

}  // namespace dcn_ext
