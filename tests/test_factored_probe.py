"""bench/factored_probe.py (v36 in bench/NOTES.md): the identity it measures, and its CPU exit."""
from __future__ import annotations

import pytest
import torch

from bench import factored_probe
from dcn_ext.reference import modulated_deform_conv2d_reference as reference


def test_gemm_then_sample_equals_the_dcn_in_float64():
    # The probe's premise: sum_t m_t W_t bilinear(x, p_t) = sum_t m_t bilinear(W_t x, p_t).
    # The right side is built from the reference itself: y_t = W_t x, sampled by a 1x1 DCN
    # with an identity weight at the tap's position plus its offset. Offsets of 3 px send
    # samples past the border, where both sides must read zeros.
    gen = torch.Generator().manual_seed(0)
    n, cin, cout, h, w = 2, 5, 3, 6, 7
    x = torch.randn(n, cin, h, w, generator=gen, dtype=torch.float64)
    offset = 3.0 * torch.randn(n, 18, h, w, generator=gen, dtype=torch.float64)
    mask = torch.rand(n, 9, h, w, generator=gen, dtype=torch.float64)
    weight = torch.randn(cout, cin, 3, 3, generator=gen, dtype=torch.float64)
    bias = torch.randn(cout, generator=gen, dtype=torch.float64)
    expected = reference(x, offset, mask, weight, bias, 1, 1, 1, 1, 1)

    identity = torch.eye(cout, dtype=torch.float64).view(cout, cout, 1, 1)
    got = bias.view(1, cout, 1, 1).expand(n, cout, h, w).clone()
    for tap in range(9):
        i, j = divmod(tap, 3)
        y_tap = torch.einsum("oc,nchw->nohw", weight[:, :, i, j], x)
        tap_offset = offset[:, 2 * tap:2 * tap + 2].clone()
        tap_offset[:, 0] += i - 1
        tap_offset[:, 1] += j - 1
        got += reference(y_tap, tap_offset, mask[:, tap:tap + 1], identity, None, 1, 0, 1, 1, 1)
    assert torch.allclose(got, expected, rtol=1e-12, atol=1e-12), (got - expected).abs().max()
    # Some samples did fall outside the image.
    assert (offset.abs() > 3).any()


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA GPU is present: the probe would measure")
def test_factored_probe_says_plainly_that_no_gpu_is_present(tmp_path, capsys):
    assert factored_probe.main(["--out", str(tmp_path)]) == 2
    assert "no CUDA GPU is visible" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())
