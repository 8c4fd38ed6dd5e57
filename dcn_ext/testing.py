"""Random problems for checking DCN implementations against the float64 reference.

Shared by this project's tests and by other hosts of the kernels (TensorRT plugin,
implicit-GEMM kernel) so that all of them are checked on the same kind of input:
offsets ~ N(0, sigma^2) pixels, mask ~ U(0, 1), weights scaled by 1/sqrt(fan_in).
"""
from __future__ import annotations

from typing import Dict, List, Optional, Tuple

import torch


def output_size(height: int, width: int, kernel: Tuple[int, int], stride: Tuple[int, int],
                padding: Tuple[int, int], dilation: Tuple[int, int]) -> Tuple[int, int]:
    return tuple(  # type: ignore[return-value]
        (size + 2 * pad - (dil * (k - 1) + 1)) // step + 1
        for size, k, step, pad, dil in zip((height, width), kernel, stride, padding, dilation))


def random_case(n: int = 2, c_in: int = 4, c_out: int = 6, h: int = 7, w: int = 9, *,
                kernel: Tuple[int, int] = (3, 3), stride: Tuple[int, int] = (1, 1),
                padding: Tuple[int, int] = (1, 1), dilation: Tuple[int, int] = (1, 1),
                groups: int = 1, dg: int = 1, sigma: float = 2.0, bias: bool = True,
                dtype: torch.dtype = torch.float64, device="cpu",
                seed: int = 0) -> Tuple[List[Optional[torch.Tensor]], Dict[str, object]]:
    """([input, offset, mask, weight, bias or None], keyword arguments of the op).

    Values are drawn in float64 on the CPU from ``seed`` (identical on every device), then
    converted to ``dtype`` on ``device``.
    """
    generator = torch.Generator().manual_seed(seed)
    kh, kw = kernel
    ho, wo = output_size(h, w, kernel, stride, padding, dilation)
    fan_in = c_in // groups * kh * kw

    def draw(shape, kind="normal"):
        if kind == "uniform":
            return torch.rand(*shape, generator=generator, dtype=torch.float64)
        return torch.randn(*shape, generator=generator, dtype=torch.float64)

    tensors = [
        draw((n, c_in, h, w)),
        draw((n, 2 * dg * kh * kw, ho, wo)) * sigma,
        draw((n, dg * kh * kw, ho, wo), "uniform"),
        draw((c_out, c_in // groups, kh, kw)) / fan_in ** 0.5,
        draw((c_out,)) if bias else None,
    ]
    tensors = [None if t is None else t.to(device=device, dtype=dtype) for t in tensors]
    params = dict(stride=stride, padding=padding, dilation=dilation, groups=groups,
                  deformable_groups=dg)
    return tensors, params
