// The op schema (defined once, here), argument checks, and the Python module entry point.
// Backends register implementations in cpu/ and cuda/; autograd and the fake (shape-only)
// kernel are registered from Python (dcn_ext/ops.py).
#include <Python.h>

#include <torch/library.h>

#include <climits>
#include <sstream>
#include <string>

#include "modulated_deform_conv.h"

namespace dcn_ext {
namespace {

std::string sizes_text(at::IntArrayRef sizes) {
  std::ostringstream out;
  out << sizes;
  return out.str();
}

void check_pair(at::IntArrayRef values, const char* name, int64_t minimum) {
  TORCH_CHECK_VALUE(values.size() == 2, name, " is not valid: got: ", sizes_text(values),
                    " expected: 2 values (height, width)");
  for (size_t i = 0; i < 2; ++i) {
    TORCH_CHECK_VALUE(values[i] >= minimum && values[i] <= INT_MAX, name, "[", i,
                      "] is not valid: got: ", values[i], " expected: >= ", minimum);
  }
}

void check_rank(const at::Tensor& tensor, const char* name, int64_t rank, const char* layout) {
  TORCH_CHECK_VALUE(tensor.dim() == rank, name, ".dim() is not valid: got: ", tensor.dim(),
                    " expected: ", rank, " ", layout);
  for (int64_t d = 0; d < tensor.dim(); ++d) {
    TORCH_CHECK_VALUE(tensor.size(d) <= INT_MAX, name, ".shape[", d,
                      "] is not valid: got: ", tensor.size(d), " expected: <= ", INT_MAX);
  }
}

void check_same_kind(const at::Tensor& tensor, const char* name, const at::Tensor& input) {
  TORCH_CHECK_VALUE(tensor.scalar_type() == input.scalar_type(), name,
                    ".dtype is not valid: got: ", tensor.scalar_type(),
                    " expected: ", input.scalar_type(), " (input.dtype)");
  TORCH_CHECK_VALUE(tensor.device() == input.device(), name, ".device is not valid: got: ",
                    tensor.device(), " expected: ", input.device(), " (input.device)");
}

void check_dim(const at::Tensor& tensor, const char* name, int64_t d, int64_t expected) {
  TORCH_CHECK_VALUE(tensor.size(d) == expected, name, ".shape[", d,
                    "] is not valid: got: ", tensor.size(d), " expected: ", expected);
}

}  // namespace

dcn::ConvGeometry check_arguments(const at::Tensor& input, const at::Tensor& offset,
                                  const at::Tensor& mask, const at::Tensor& weight,
                                  const std::optional<at::Tensor>& bias, at::IntArrayRef stride,
                                  at::IntArrayRef padding, at::IntArrayRef dilation,
                                  int64_t groups, int64_t deformable_groups) {
  check_rank(input, "input", 4, "(N, C, H, W)");
  check_rank(offset, "offset", 4, "(N, 2*deformable_groups*kh*kw, Ho, Wo)");
  check_rank(mask, "mask", 4, "(N, deformable_groups*kh*kw, Ho, Wo)");
  check_rank(weight, "weight", 4, "(C_out, C_in/groups, kh, kw)");
  check_pair(stride, "stride", 1);
  check_pair(padding, "padding", 0);
  check_pair(dilation, "dilation", 1);
  TORCH_CHECK_VALUE(groups >= 1 && groups <= INT_MAX, "groups is not valid: got: ", groups,
                    " expected: >= 1");
  TORCH_CHECK_VALUE(deformable_groups >= 1 && deformable_groups <= INT_MAX,
                    "deformable_groups is not valid: got: ", deformable_groups,
                    " expected: >= 1");
  TORCH_CHECK_VALUE(at::isFloatingType(input.scalar_type()), "input.dtype is not valid: got: ",
                    input.scalar_type(), " expected: a floating point type");
  check_same_kind(offset, "offset", input);
  check_same_kind(mask, "mask", input);
  check_same_kind(weight, "weight", input);

  dcn::ConvGeometry g{};
  g.batch = static_cast<int>(input.size(0));
  g.in_channels = static_cast<int>(input.size(1));
  g.height = static_cast<int>(input.size(2));
  g.width = static_cast<int>(input.size(3));
  g.out_channels = static_cast<int>(weight.size(0));
  g.kernel_h = static_cast<int>(weight.size(2));
  g.kernel_w = static_cast<int>(weight.size(3));
  g.stride_h = static_cast<int>(stride[0]);
  g.stride_w = static_cast<int>(stride[1]);
  g.pad_h = static_cast<int>(padding[0]);
  g.pad_w = static_cast<int>(padding[1]);
  g.dilation_h = static_cast<int>(dilation[0]);
  g.dilation_w = static_cast<int>(dilation[1]);
  g.groups = static_cast<int>(groups);
  g.deformable_groups = static_cast<int>(deformable_groups);

  TORCH_CHECK_VALUE(g.in_channels % g.groups == 0, "input.shape[1] is not valid: got: ",
                    g.in_channels, " expected: a multiple of groups (", groups, ")");
  TORCH_CHECK_VALUE(g.out_channels % g.groups == 0, "weight.shape[0] is not valid: got: ",
                    g.out_channels, " expected: a multiple of groups (", groups, ")");
  check_dim(weight, "weight", 1, g.in_channels / g.groups);
  TORCH_CHECK_VALUE(g.in_channels % g.deformable_groups == 0,
                    "input.shape[1] is not valid: got: ", g.in_channels,
                    " expected: a multiple of deformable_groups (", deformable_groups, ")");
  TORCH_CHECK_VALUE(g.kernel_h >= 1 && g.kernel_w >= 1, "weight.shape[2:] is not valid: got: ",
                    sizes_text(weight.sizes().slice(2)), " expected: >= 1");

  const int64_t out_h = (static_cast<int64_t>(g.height) + 2 * g.pad_h -
                         (static_cast<int64_t>(g.dilation_h) * (g.kernel_h - 1) + 1)) /
                            g.stride_h + 1;
  const int64_t out_w = (static_cast<int64_t>(g.width) + 2 * g.pad_w -
                         (static_cast<int64_t>(g.dilation_w) * (g.kernel_w - 1) + 1)) /
                            g.stride_w + 1;
  TORCH_CHECK_VALUE(out_h >= 1 && out_w >= 1, "output size is not valid: got: (", out_h, ", ",
                    out_w, ") expected: >= 1 each; input ", g.height, "x", g.width,
                    " is too small for kernel ", g.kernel_h, "x", g.kernel_w, ", padding ",
                    sizes_text(padding), ", dilation ", sizes_text(dilation));
  g.out_height = static_cast<int>(out_h);
  g.out_width = static_cast<int>(out_w);

  const int64_t taps = static_cast<int64_t>(g.kernel_h) * g.kernel_w;
  check_dim(offset, "offset", 0, g.batch);
  check_dim(offset, "offset", 1, 2 * g.deformable_groups * taps);
  check_dim(offset, "offset", 2, out_h);
  check_dim(offset, "offset", 3, out_w);
  check_dim(mask, "mask", 0, g.batch);
  check_dim(mask, "mask", 1, g.deformable_groups * taps);
  check_dim(mask, "mask", 2, out_h);
  check_dim(mask, "mask", 3, out_w);
  if (bias.has_value() && bias->defined()) {
    check_same_kind(*bias, "bias", input);
    TORCH_CHECK_VALUE(bias->dim() == 1 && bias->size(0) == g.out_channels,
                      "bias.shape is not valid: got: ", sizes_text(bias->sizes()),
                      " expected: [", g.out_channels, "]");
  }
  return g;
}

void check_grad_output(const at::Tensor& grad_output, const at::Tensor& input,
                       const dcn::ConvGeometry& g) {
  check_rank(grad_output, "grad_output", 4, "(N, C_out, Ho, Wo)");
  check_same_kind(grad_output, "grad_output", input);
  check_dim(grad_output, "grad_output", 0, g.batch);
  check_dim(grad_output, "grad_output", 1, g.out_channels);
  check_dim(grad_output, "grad_output", 2, g.out_height);
  check_dim(grad_output, "grad_output", 3, g.out_width);
}

}  // namespace dcn_ext

DCN_TORCH_LIBRARY(DCN_TORCH_NAMESPACE, m) {
  m.def(DCN_OP_NAME
        "(Tensor input, Tensor offset, Tensor mask, Tensor weight, Tensor? bias, "
        "int[2] stride, int[2] padding, int[2] dilation, int groups, int deformable_groups)"
        " -> Tensor");
  // Returns (grad_input, grad_offset, grad_mask, grad_weight, grad_bias); grad_bias is
  // empty when bias is None.
  m.def(DCN_BACKWARD_OP_NAME
        "(Tensor grad_output, Tensor input, Tensor offset, Tensor mask, Tensor weight, "
        "Tensor? bias, int[2] stride, int[2] padding, int[2] dilation, int groups, "
        "int deformable_groups) -> (Tensor, Tensor, Tensor, Tensor, Tensor)");
  // Forward with a forced CUDA kernel (dcn::ForwardAlgorithm: 0 auto, 1 simple, 2 implicit
  // GEMM), for tests and benchmarks that compare the kernels. CPU ignores `algorithm`.
  m.def(DCN_WITH_ALGORITHM_OP_NAME
        "(Tensor input, Tensor offset, Tensor mask, Tensor weight, Tensor? bias, "
        "int[2] stride, int[2] padding, int[2] dilation, int groups, int deformable_groups, "
        "int algorithm) -> Tensor");
}

// `from . import _C` needs a Python module; the ops themselves register on load.
PyMODINIT_FUNC PyInit__C(void) {
  static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_C", nullptr, -1, nullptr};
  return PyModule_Create(&module);
}
