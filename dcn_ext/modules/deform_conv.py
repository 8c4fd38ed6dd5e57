"""nn.Modules over the op: a drop-in for upstream CenterNet's ``DCN``.

``ModulatedDeformConvPack`` takes upstream's constructor arguments and has upstream's
state-dict keys (``weight``, ``bias``, ``conv_offset_mask.weight``,
``conv_offset_mask.bias``), so CenterNet checkpoints load unchanged. (Newer mmcv renamed
the offset conv to ``conv_offset``; that name would break every published checkpoint.)
"""
from __future__ import annotations

import math
from typing import Optional, Tuple, Union

import torch
from torch import nn

from ..checks import as_pair
from ..functional import modulated_deform_conv2d

IntPair = Union[int, Tuple[int, int]]


class ModulatedDeformConv(nn.Module):
    """Modulated deformable convolution with offset and mask given by the caller.

    forward(input [N, C, H, W], offset [N, 2*dg*kh*kw, Ho, Wo], mask [N, dg*kh*kw, Ho, Wo])
    -> [N, out_channels, Ho, Wo].
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: IntPair,
                 stride: IntPair = 1, padding: IntPair = 0, dilation: IntPair = 1,
                 deformable_groups: int = 1, *, groups: int = 1, bias: bool = True):
        super().__init__()
        if in_channels % groups or out_channels % groups:
            raise ValueError(f"groups is not valid: got: {groups} expected: a divisor of "
                             f"in_channels ({in_channels}) and out_channels ({out_channels})")
        if in_channels % deformable_groups:
            raise ValueError(f"deformable_groups is not valid: got: {deformable_groups} "
                             f"expected: a divisor of in_channels ({in_channels})")
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.kernel_size = as_pair(kernel_size, "kernel_size", 1)
        self.stride = as_pair(stride, "stride", 1)
        self.padding = as_pair(padding, "padding", 0)
        self.dilation = as_pair(dilation, "dilation", 1)
        self.groups = groups
        self.deformable_groups = deformable_groups
        self.weight = nn.Parameter(
            torch.empty(out_channels, in_channels // groups, *self.kernel_size))
        self.bias = nn.Parameter(torch.empty(out_channels)) if bias else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # Uniform in +-1/sqrt(fan_in), zero bias: the initialisation DCNv2 trained with.
        fan_in = self.in_channels * self.kernel_size[0] * self.kernel_size[1]
        bound = 1.0 / math.sqrt(fan_in)
        nn.init.uniform_(self.weight, -bound, bound)
        if self.bias is not None:
            nn.init.zeros_(self.bias)

    def forward(self, input: torch.Tensor, offset: torch.Tensor,
                mask: torch.Tensor) -> torch.Tensor:
        return modulated_deform_conv2d(input, offset, mask, self.weight, self.bias,
                                       self.stride, self.padding, self.dilation, self.groups,
                                       self.deformable_groups)

    def extra_repr(self) -> str:
        text = (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"stride={self.stride}, padding={self.padding}, dilation={self.dilation}, "
                f"deformable_groups={self.deformable_groups}")
        if self.groups != 1:
            text += f", groups={self.groups}"
        if self.bias is None:
            text += ", bias=False"
        return text


class ModulatedDeformConvPack(ModulatedDeformConv):
    """DCNv2 layer that predicts its own offsets and mask (upstream CenterNet's ``DCN``).

    ``conv_offset_mask`` (a plain conv with the layer's kernel, stride and padding, no
    dilation, zero-initialised so training starts from a regular convolution) gives
    3*dg*kh*kw channels: offsets are the first 2*dg*kh*kw, the mask is the sigmoid of the
    rest. Static slicing rather than torch.chunk: same numbers, and it exports as constant
    Slice nodes instead of Shape/Gather chains.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: IntPair,
                 stride: IntPair, padding: IntPair, dilation: IntPair = 1,
                 deformable_groups: int = 1, *, groups: int = 1, bias: bool = True):
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation,
                         deformable_groups, groups=groups, bias=bias)
        taps = self.kernel_size[0] * self.kernel_size[1]
        self.offset_channels = 2 * deformable_groups * taps
        self.conv_offset_mask = nn.Conv2d(in_channels, 3 * deformable_groups * taps,
                                          kernel_size=self.kernel_size, stride=self.stride,
                                          padding=self.padding, bias=True)
        self.init_offset()

    def init_offset(self) -> None:
        nn.init.zeros_(self.conv_offset_mask.weight)
        nn.init.zeros_(self.conv_offset_mask.bias)

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        out = self.conv_offset_mask(input)
        offset = out[:, :self.offset_channels]
        mask = torch.sigmoid(out[:, self.offset_channels:])
        return modulated_deform_conv2d(input, offset, mask, self.weight, self.bias,
                                       self.stride, self.padding, self.dilation, self.groups,
                                       self.deformable_groups)


# Upstream CenterNet imports the layer under this name.
DCN = ModulatedDeformConvPack
