"""A float64 reference of modulated deformable convolution (DCNv2), written from the math.

This is the oracle every fast path is checked against (the CPU and CUDA kernels of this
package, the TensorRT plugin, the implicit-GEMM kernel). It is deliberately simple: plain
torch ops in float64, vectorised over batch, pixels and channels, looping only over the
kh*kw kernel taps, so a 64-channel 96x320 layer takes well under a second on a CPU.

The definition (DCNv2, Zhu et al. 2019), per output pixel (n, ho, wo), deformable group g,
kernel tap (i, j) with k = i*kw + j:

    y = ho*stride_h - pad_h + i*dilation_h + offset[n, g*2K + 2k,     ho, wo]   (dy first)
    x = wo*stride_w - pad_w + j*dilation_w + offset[n, g*2K + 2k + 1, ho, wo]   (then dx)
    v(c) = bilinear(input[n, c], y, x) * mask[n, g*K + k, ho, wo]   for c in group g
    out[n, o, ho, wo] = bias[o] + sum_{c in conv group of o, i, j} weight[o, c, i, j] * v(c)

Bilinear sampling: the value is 0 unless -1 < y < H and -1 < x < W; inside that band the
four neighbours floor/ceil are blended and a neighbour outside the image counts as 0.
Offsets that are +-inf or huge therefore give 0. A NaN coordinate gives NaN (the sample
is undefined, so the output says so instead of silently turning into 0); NaN in the input
or mask propagates through the arithmetic as usual.
"""
from __future__ import annotations

from typing import Optional, Sequence, Tuple, Union

import torch

IntPair = Union[int, Sequence[int]]


def _pair(value: IntPair, name: str) -> Tuple[int, int]:
    if isinstance(value, int):
        return value, value
    pair = tuple(int(v) for v in value)
    if len(pair) != 2:
        raise ValueError(f"{name} must be an int or a pair of ints: got: {value!r}")
    return pair  # type: ignore[return-value]


def _sample_bilinear(image: torch.Tensor, y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Samples ``image`` [N, G, C, H, W] at coordinates ``y``, ``x`` [N, G, L].

    Returns [N, G, C, L]. Zero outside the (-1, H) x (-1, W) band, NaN where a coordinate
    is NaN.
    """
    n, g, c, height, width = image.shape
    flat = image.reshape(n, g, c, height * width)
    length = y.shape[-1]
    inside = (y > -1) & (y < height) & (x > -1) & (x < width)  # False for NaN and +-inf
    # Park coordinates outside the band at 0 so floor() and the integer casts stay defined.
    y_in = torch.where(inside, y, torch.zeros_like(y))
    x_in = torch.where(inside, x, torch.zeros_like(x))
    y_low = torch.floor(y_in)
    x_low = torch.floor(x_in)
    frac_y = y_in - y_low
    frac_x = x_in - x_low
    y_low = y_low.long()
    x_low = x_low.long()
    result = torch.zeros(n, g, c, length, dtype=image.dtype, device=image.device)
    corners = (
        (0, 0, (1 - frac_y) * (1 - frac_x)),
        (0, 1, (1 - frac_y) * frac_x),
        (1, 0, frac_y * (1 - frac_x)),
        (1, 1, frac_y * frac_x),
    )
    for dy, dx, corner_weight in corners:
        cy = y_low + dy
        cx = x_low + dx
        valid = inside & (cy >= 0) & (cy <= height - 1) & (cx >= 0) & (cx <= width - 1)
        index = cy.clamp(0, height - 1) * width + cx.clamp(0, width - 1)
        values = flat.gather(3, index.unsqueeze(2).expand(n, g, c, length))
        contribution = values * corner_weight.unsqueeze(2)
        # where(), not multiplication by 0: a NaN/inf pixel at a clamped index must not leak.
        result = result + torch.where(valid.unsqueeze(2), contribution,
                                      torch.zeros_like(contribution))
    undefined = (torch.isnan(y) | torch.isnan(x)).unsqueeze(2).expand_as(result)
    return torch.where(undefined, torch.full_like(result, float("nan")), result)


def modulated_deform_conv2d_reference(
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
    """Modulated deformable convolution in float64 (always returns float64).

    Shapes: input [N, C, H, W]; offset [N, 2*dg*kh*kw, Ho, Wo]; mask [N, dg*kh*kw, Ho, Wo];
    weight [Cout, C/groups, kh, kw]; bias [Cout] or None. Output [N, Cout, Ho, Wo].
    """
    stride_h, stride_w = _pair(stride, "stride")
    pad_h, pad_w = _pair(padding, "padding")
    dil_h, dil_w = _pair(dilation, "dilation")
    f64 = torch.float64
    image = input.to(f64)
    n, channels, height, width = image.shape
    out_channels, channels_per_group, kernel_h, kernel_w = weight.shape
    if channels != channels_per_group * groups:
        raise ValueError(f"weight.shape[1] * groups must equal input channels: "
                         f"got: {channels_per_group} * {groups} expected: {channels}")
    if channels % deformable_groups:
        raise ValueError(f"deformable_groups must divide input channels: "
                         f"got: {deformable_groups} for {channels} channels")
    out_h = (height + 2 * pad_h - (dil_h * (kernel_h - 1) + 1)) // stride_h + 1
    out_w = (width + 2 * pad_w - (dil_w * (kernel_w - 1) + 1)) // stride_w + 1
    taps = kernel_h * kernel_w
    length = out_h * out_w
    dg = deformable_groups
    expected_offset = (n, 2 * dg * taps, out_h, out_w)
    expected_mask = (n, dg * taps, out_h, out_w)
    if tuple(offset.shape) != expected_offset:
        raise ValueError(f"offset shape: got: {tuple(offset.shape)} expected: {expected_offset}")
    if tuple(mask.shape) != expected_mask:
        raise ValueError(f"mask shape: got: {tuple(mask.shape)} expected: {expected_mask}")

    grouped = image.reshape(n, dg, channels // dg, height, width)
    offsets = offset.to(f64).reshape(n, dg, taps, 2, length)
    masks = mask.to(f64).reshape(n, dg, taps, length)
    w64 = weight.to(f64)
    device = image.device
    base_y = (torch.arange(out_h, device=device, dtype=f64) * stride_h - pad_h)
    base_x = (torch.arange(out_w, device=device, dtype=f64) * stride_w - pad_w)
    base_y = base_y.view(out_h, 1).expand(out_h, out_w).reshape(length)
    base_x = base_x.view(1, out_w).expand(out_h, out_w).reshape(length)

    out = torch.zeros(n, groups, out_channels // groups, length, dtype=f64, device=device)
    for i in range(kernel_h):
        for j in range(kernel_w):
            k = i * kernel_w + j
            y = base_y + i * dil_h + offsets[:, :, k, 0]
            x = base_x + j * dil_w + offsets[:, :, k, 1]
            sampled = _sample_bilinear(grouped, y, x) * masks[:, :, k].unsqueeze(2)
            columns = sampled.reshape(n, groups, channels_per_group, length)
            tap_weight = w64[:, :, i, j].reshape(groups, out_channels // groups,
                                                 channels_per_group)
            out = out + torch.einsum("goc,ngcl->ngol", tap_weight, columns)
    out = out.reshape(n, out_channels, out_h, out_w)
    if bias is not None:
        out = out + bias.to(f64).view(1, out_channels, 1, 1)
    return out
