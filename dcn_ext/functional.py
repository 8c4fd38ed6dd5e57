"""Functional form of modulated deformable convolution (DCNv2)."""
from __future__ import annotations

from typing import Optional

import torch

from . import ops
from .checks import IntPair, as_pair, check_arguments


def modulated_deform_conv2d(
    input: torch.Tensor,
    offset: torch.Tensor,
    mask: torch.Tensor,
    weight: torch.Tensor,
    bias: Optional[torch.Tensor] = None,
    stride: IntPair = 1,
    padding: IntPair = 0,
    dilation: IntPair = 1,
    groups: int = 1,
    deformable_groups: int = 1,
) -> torch.Tensor:
    """Modulated deformable convolution.

    Args:
        input: [N, C, H, W].
        offset: [N, 2*deformable_groups*kh*kw, Ho, Wo]; per deformable group and tap
            (i, j), channel 2*(i*kw + j) is the row offset dy and the next one dx.
        mask: [N, deformable_groups*kh*kw, Ho, Wo], the modulation of each tap.
        weight: [C_out, C/groups, kh, kw]. bias: [C_out] or None.
        stride, padding, dilation: an int or a (height, width) pair.

    Returns:
        [N, C_out, Ho, Wo] with Ho = (H + 2*pad_h - (dil_h*(kh-1) + 1)) // stride_h + 1.

    Bad arguments raise ValueError naming the argument, with got/expected values.
    """
    stride_pair = as_pair(stride, "stride", 1)
    padding_pair = as_pair(padding, "padding", 0)
    dilation_pair = as_pair(dilation, "dilation", 1)
    check_arguments(input, offset, mask, weight, bias, stride_pair, padding_pair,
                    dilation_pair, groups, deformable_groups)
    return ops.forward_op()(input, offset, mask, weight, bias, list(stride_pair),
                            list(padding_pair), list(dilation_pair), groups, deformable_groups)
