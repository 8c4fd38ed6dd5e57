"""Loads the compiled ops (``_C``) and registers their autograd formula and fake kernel.

The schema lives in C++ (csrc/modulated_deform_conv.cpp); the kernels register per
backend there. What is registered here is backend-independent: the backward formula (it
calls the backward op, which has CPU and CUDA kernels) and the fake kernel that gives
output shapes to tracing, torch.export, torch.compile and the dynamo ONNX exporter.

Two copies of this package can be importable in one process (``dcn_ext`` from the
centernet-patch repository and ``lib.models.networks.dcn`` in a patched CenterNet). The
first copy imported registers everything; later copies find the op and reuse it, because
registering a schema or a fake kernel twice is an error.
"""
from __future__ import annotations

from pathlib import Path

import torch

from .checks import check_arguments
from .contract import CONTRACT

NAMESPACE = CONTRACT.torch_library_namespace
OP_NAME = CONTRACT.torch_op_name
BACKWARD_OP_NAME = f"{OP_NAME}_backward"
WITH_ALGORITHM_OP_NAME = f"{OP_NAME}_with_algorithm"
PACKAGE_DIR = Path(__file__).resolve().parent

# Values of dcn::ForwardAlgorithm (csrc/kernels/dcn_params.h) for forward_with_algorithm.
FORWARD_ALGORITHMS = {"auto": 0, "simple": 1, "implicit_gemm": 2}


class ExtensionNotBuiltError(ImportError):
    """The compiled ops are missing: the package was copied but not built."""


def _already_registered() -> bool:
    try:
        getattr(getattr(torch.ops, NAMESPACE), OP_NAME)
    except (AttributeError, RuntimeError):
        return False
    return True


def _load_library() -> None:
    try:
        from . import _C  # noqa: F401  (loading it registers the schema and kernels)
    except ImportError as error:
        raise ExtensionNotBuiltError(
            f"the compiled DCN ops are not built in {PACKAGE_DIR} ({error}). Build them with:\n"
            f"    cd {PACKAGE_DIR} && python setup.py build_ext --inplace\n"
            f"or run `centernet-patch build` on the patched CenterNet tree."
        ) from error


def _fake_forward(input, offset, mask, weight, bias, stride, padding, dilation, groups,
                  deformable_groups, *algorithm):
    shape = check_arguments(input, offset, mask, weight, bias, stride, padding, dilation,
                            groups, deformable_groups)
    # The real kernels' layout rule (csrc/modulated_deform_conv.h, is_channels_last).
    channels_last = (input.dim() == 4 and not input.is_contiguous()
                     and input.is_contiguous(memory_format=torch.channels_last))
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    return input.new_empty(shape).contiguous(memory_format=fmt)


def _fake_backward(grad_output, input, offset, mask, weight, bias, stride, padding, dilation,
                   groups, deformable_groups):
    grad_bias = (torch.empty_like(bias) if bias is not None
                 else weight.new_empty((0,)))
    # The real backward returns contiguous (NCHW) gradients whatever the inputs' layout.
    return (input.new_empty(input.shape), offset.new_empty(offset.shape),
            mask.new_empty(mask.shape), weight.new_empty(weight.shape), grad_bias)


def _setup_context(ctx, inputs, output):
    input, offset, mask, weight, bias = inputs[:5]
    ctx.save_for_backward(input, offset, mask, weight, bias)
    ctx.conv_arguments = inputs[5:]
    ctx.has_bias = bias is not None


def _backward(ctx, grad_output):
    input, offset, mask, weight, bias = ctx.saved_tensors
    grads = backward_op()(grad_output.contiguous(), input, offset, mask, weight, bias,
                          *ctx.conv_arguments)
    grad_input, grad_offset, grad_mask, grad_weight, grad_bias = grads
    return (grad_input, grad_offset, grad_mask, grad_weight,
            grad_bias if ctx.has_bias else None, None, None, None, None, None)


def _register_python_parts() -> None:
    qualname = f"{NAMESPACE}::{OP_NAME}"
    torch.library.register_fake(qualname)(_fake_forward)
    torch.library.register_fake(f"{NAMESPACE}::{WITH_ALGORITHM_OP_NAME}")(_fake_forward)
    torch.library.register_fake(f"{NAMESPACE}::{BACKWARD_OP_NAME}")(_fake_backward)
    torch.library.register_autograd(qualname, _backward, setup_context=_setup_context)


def _op_namespace():
    return getattr(torch.ops, NAMESPACE)


def forward_op():
    """torch.ops.<namespace>.<op>.default: the forward op (autograd-aware)."""
    return getattr(_op_namespace(), OP_NAME).default


def backward_op():
    return getattr(_op_namespace(), BACKWARD_OP_NAME).default


def forward_with_algorithm_op():
    """Forward with a forced CUDA kernel (last argument: a FORWARD_ALGORITHMS value)."""
    return getattr(_op_namespace(), WITH_ALGORITHM_OP_NAME).default


def cuda_available() -> bool:
    """True when the compiled library has CUDA kernels (not whether a GPU is present)."""
    return torch._C._dispatch_has_kernel_for_dispatch_key(f"{NAMESPACE}::{OP_NAME}", "CUDA")


if not _already_registered():
    _load_library()
    _register_python_parts()
