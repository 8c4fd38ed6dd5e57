"""Argument checks for the op, shared by the functional form and the fake (shape) kernel.

They mirror the C++ checks (csrc/modulated_deform_conv.cpp) so that a bad call fails with
the same message in eager mode, under torch.compile/torch.export (fake tensors) and in
ONNX export: "<argument> is not valid: got: ... expected: ...".
"""
from __future__ import annotations

from typing import Optional, Sequence, Tuple, Union

import torch

IntPair = Union[int, Sequence[int]]


def as_pair(value: IntPair, name: str, minimum: int) -> Tuple[int, int]:
    """An int or a pair of ints -> a validated (height, width) pair."""
    if isinstance(value, bool):
        raise ValueError(f"{name} is not valid: got: {value!r} expected: an int or 2 ints")
    if isinstance(value, int):
        pair = (value, value)
    else:
        try:
            pair = tuple(int(v) for v in value)
        except TypeError:
            raise ValueError(f"{name} is not valid: got: {value!r} "
                             f"expected: an int or 2 ints") from None
        if len(pair) != 2:
            raise ValueError(f"{name} is not valid: got: {list(value)} "
                             f"expected: 2 values (height, width)")
    for index, item in enumerate(pair):
        if item < minimum:
            raise ValueError(f"{name}[{index}] is not valid: got: {item} "
                             f"expected: >= {minimum}")
    return pair  # type: ignore[return-value]


def _check_rank(tensor: torch.Tensor, name: str, layout: str) -> None:
    if not isinstance(tensor, torch.Tensor):
        raise ValueError(f"{name} is not valid: got: {type(tensor).__name__} "
                         f"expected: a Tensor {layout}")
    if tensor.dim() != 4:
        raise ValueError(f"{name}.dim() is not valid: got: {tensor.dim()} expected: 4 {layout}")


def _check_same_kind(tensor: torch.Tensor, name: str, input: torch.Tensor) -> None:
    if tensor.dtype != input.dtype:
        raise ValueError(f"{name}.dtype is not valid: got: {tensor.dtype} "
                         f"expected: {input.dtype} (input.dtype)")
    if tensor.device != input.device:
        raise ValueError(f"{name}.device is not valid: got: {tensor.device} "
                         f"expected: {input.device} (input.device)")


def _check_dim(tensor: torch.Tensor, name: str, dim: int, expected) -> None:
    if tensor.shape[dim] != expected:
        raise ValueError(f"{name}.shape[{dim}] is not valid: got: {tensor.shape[dim]} "
                         f"expected: {expected}")


def check_arguments(input: torch.Tensor, offset: torch.Tensor, mask: torch.Tensor,
                    weight: torch.Tensor, bias: Optional[torch.Tensor], stride: IntPair,
                    padding: IntPair, dilation: IntPair, groups: int,
                    deformable_groups: int) -> Tuple:
    """Validates a call; returns the output shape (N, C_out, Ho, Wo)."""
    _check_rank(input, "input", "(N, C, H, W)")
    _check_rank(offset, "offset", "(N, 2*deformable_groups*kh*kw, Ho, Wo)")
    _check_rank(mask, "mask", "(N, deformable_groups*kh*kw, Ho, Wo)")
    _check_rank(weight, "weight", "(C_out, C_in/groups, kh, kw)")
    stride_h, stride_w = as_pair(stride, "stride", 1)
    pad_h, pad_w = as_pair(padding, "padding", 0)
    dil_h, dil_w = as_pair(dilation, "dilation", 1)
    for name, value in (("groups", groups), ("deformable_groups", deformable_groups)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} is not valid: got: {value!r} expected: an int >= 1")
    if not input.dtype.is_floating_point:
        raise ValueError(f"input.dtype is not valid: got: {input.dtype} "
                         f"expected: a floating point type")
    for name, tensor in (("offset", offset), ("mask", mask), ("weight", weight)):
        _check_same_kind(tensor, name, input)

    batch, channels, height, width = input.shape
    out_channels, _, kernel_h, kernel_w = weight.shape
    if channels % groups != 0:
        raise ValueError(f"input.shape[1] is not valid: got: {channels} "
                         f"expected: a multiple of groups ({groups})")
    if out_channels % groups != 0:
        raise ValueError(f"weight.shape[0] is not valid: got: {out_channels} "
                         f"expected: a multiple of groups ({groups})")
    _check_dim(weight, "weight", 1, channels // groups)
    if channels % deformable_groups != 0:
        raise ValueError(f"input.shape[1] is not valid: got: {channels} "
                         f"expected: a multiple of deformable_groups ({deformable_groups})")
    out_h = (height + 2 * pad_h - (dil_h * (kernel_h - 1) + 1)) // stride_h + 1
    out_w = (width + 2 * pad_w - (dil_w * (kernel_w - 1) + 1)) // stride_w + 1
    if out_h < 1 or out_w < 1:
        raise ValueError(f"output size is not valid: got: ({out_h}, {out_w}) expected: >= 1 "
                         f"each; input {height}x{width} is too small for kernel "
                         f"{kernel_h}x{kernel_w}, padding {[pad_h, pad_w]}, "
                         f"dilation {[dil_h, dil_w]}")
    taps = kernel_h * kernel_w
    for dim, expected in enumerate((batch, 2 * deformable_groups * taps, out_h, out_w)):
        _check_dim(offset, "offset", dim, expected)
    for dim, expected in enumerate((batch, deformable_groups * taps, out_h, out_w)):
        _check_dim(mask, "mask", dim, expected)
    if bias is not None:
        _check_same_kind(bias, "bias", input)
        if tuple(bias.shape) != (out_channels,):
            raise ValueError(f"bias.shape is not valid: got: {list(bias.shape)} "
                             f"expected: [{out_channels}]")
    return batch, out_channels, out_h, out_w
