"""bench/dense_baselines.py (v40 in bench/NOTES.md): the identities its baselines rest on, and its CPU exit."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from bench import dense_baselines
from dcn_ext.reference import modulated_deform_conv2d_reference as reference


def _layer(seed=0, n=2, cin=5, cout=3, h=6, w=7):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, cin, h, w, generator=gen, dtype=torch.float64)
    weight = torch.randn(cout, cin, 3, 3, generator=gen, dtype=torch.float64)
    bias = torch.randn(cout, generator=gen, dtype=torch.float64)
    return x, weight, bias


def test_the_gemm_of_the_columns_is_the_dense_convolution():
    x, weight, bias = _layer()
    n, _, h, w = x.shape
    got = bias + dense_baselines.im2col_rows(x) @ dense_baselines.weight_columns(weight)
    expected = F.conv2d(x, weight, bias, padding=1)
    assert got.shape == (n * h * w, weight.shape[0])
    got = got.view(n, h, w, -1).permute(0, 3, 1, 2)
    assert torch.allclose(got, expected, rtol=1e-12, atol=1e-12), (got - expected).abs().max()


def test_the_dcn_with_zero_offsets_and_unit_masks_is_the_dense_convolution():
    # What makes cuDNN's convolution the same layer without the deformation, border included.
    x, weight, bias = _layer(seed=1)
    n, _, h, w = x.shape
    offset = torch.zeros(n, 18, h, w, dtype=torch.float64)
    mask = torch.ones(n, 9, h, w, dtype=torch.float64)
    got = reference(x, offset, mask, weight, bias, 1, 1, 1, 1, 1)
    expected = F.conv2d(x, weight, bias, padding=1)
    assert torch.allclose(got, expected, rtol=1e-12, atol=1e-12), (got - expected).abs().max()
    # and a nonzero offset does change it, so the check above can fail
    offset[:, 0] = 0.5
    assert not torch.allclose(reference(x, offset, mask, weight, bias, 1, 1, 1, 1, 1), expected)


def test_sums_add_each_column_per_input_size_and_keep_the_worst_error():
    rows = []
    for k, (name, size) in enumerate([("512x512", 16), ("384x1280", 16)]):
        for i in range(size):
            row = {c: float(i + 1 + 100 * k) for c in dense_baselines.COLUMNS}
            row.update(input=name, layer=f"l{i}", cin=1, cout=1, hw="1x1", cudnn_conv_rel_l2=i * 1e-4,
                       cublas_gemm_rel_l2=1e-4, ours_zero_offset_rel_l2=2e-4)
            rows.append(row)
    totals = dense_baselines.sums(rows)
    assert totals["512x512"]["cublas_gemm_us"] == sum(range(1, 17))
    assert totals["384x1280"]["one_launch_us"] == sum(range(101, 117))
    assert totals["512x512"]["worst_cudnn_conv_rel_l2"] == pytest.approx(15e-4)
    assert totals["384x1280"]["target_us"] == 120.0
    table = dense_baselines.markdown(rows, totals)
    assert "**sum of 16** (target 80)" in table and f"**{sum(range(1, 17)):.1f}**" in table


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA GPU is present: the command would measure")
def test_dense_baselines_says_plainly_that_no_gpu_is_present(tmp_path, capsys):
    assert dense_baselines.main(["--out", str(tmp_path)]) == 2
    assert "no CUDA GPU is visible" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())
