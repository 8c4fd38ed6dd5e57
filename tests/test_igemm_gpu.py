"""The implicit-GEMM forward (forced through dcn_ext) against the float64 reference.

Shapes cover odd sizes, batch 3, channel counts that are not a multiple of the 64/32-channel
K step, stride 2, padding 2, two deformable groups, a 1x1 kernel and a split-K layer.
"""
from __future__ import annotations

import pytest
import torch

from dcn_ext.reference import modulated_deform_conv2d_reference

CASES = [  # batch, cin, cout, h, w, kernel, stride, pad, deformable groups
    (3, 72, 40, 17, 23, 3, 1, 1, 1),
    (2, 96, 130, 13, 29, 3, 2, 1, 1),
    (1, 128, 32, 9, 11, 3, 1, 2, 2),
    (2, 33, 17, 8, 8, 1, 1, 0, 1),
    (1, 512, 256, 16, 16, 3, 1, 1, 1),
]
LIMITS = {torch.float32: 1e-5, torch.float16: 2e-3, torch.bfloat16: 2e-3}


def _ops():
    if not torch.cuda.is_available():
        pytest.skip("no CUDA GPU: the implicit-GEMM kernel runs on the GPU only")
    try:
        from dcn_ext import ops
    except ImportError as error:
        pytest.skip(f"dcn_ext is not built: {error}")
    if not ops.cuda_available():
        pytest.skip("dcn_ext was built without CUDA kernels")
    if torch.cuda.get_device_capability()[0] < 8:
        pytest.skip("the implicit-GEMM kernel needs compute capability 8.0 or newer")
    return ops


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16], ids=str)
@pytest.mark.parametrize("case", CASES, ids=lambda c: "x".join(map(str, c)))
def test_implicit_gemm_matches_float64_reference(case, dtype):
    ops = _ops()
    n, cin, cout, h, w, k, stride, pad, dg = case
    gen = torch.Generator(device="cuda").manual_seed(hash(case) % 10000)
    ho = (h + 2 * pad - k) // stride + 1
    wo = (w + 2 * pad - k) // stride + 1
    x = torch.randn(n, cin, h, w, device="cuda", generator=gen).to(dtype)
    offset = (2.0 * torch.randn(n, 2 * dg * k * k, ho, wo, device="cuda", generator=gen)).to(dtype)
    mask = torch.sigmoid(torch.randn(n, dg * k * k, ho, wo, device="cuda", generator=gen)).to(dtype)
    weight = (torch.randn(cout, cin, k, k, device="cuda", generator=gen) / (cin * k * k) ** 0.5).to(dtype)
    bias = torch.randn(cout, device="cuda", generator=gen).to(dtype)
    op = ops.forward_with_algorithm_op()
    algorithm = ops.FORWARD_ALGORITHMS["implicit_gemm"]
    args = (x, offset, mask, weight, bias, [stride] * 2, [pad] * 2, [1, 1], 1, dg, algorithm)
    out = op(*args)
    again = op(*args)
    ref = modulated_deform_conv2d_reference(x, offset, mask, weight, bias, stride, pad, 1, 1, dg)
    assert out.shape == ref.shape and out.dtype == dtype
    assert torch.isfinite(out).all()
    error = (torch.linalg.vector_norm(out.double() - ref) / torch.linalg.vector_norm(ref)).item()
    assert error <= LIMITS[dtype], f"relative L2 error {error:.3g} > {LIMITS[dtype]}"
    assert torch.equal(out, again), "split-K results must be repeatable"
