"""`centernet-patch bench-dcn` and the layer table / roofline it reports (CPU parts)."""
from __future__ import annotations

import pytest
import torch

from bench.dcn_layers import DLA34_LAYERS, H100_SXM_CEILINGS, RESDCN18_LAYERS, model_layers
from patcher import cli
from patcher.errors import EXIT_MISSING_DEPENDENCY


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA GPU is present: the command would benchmark")
def test_bench_dcn_says_plainly_that_no_gpu_is_present(capsys):
    code = cli.main(["bench-dcn", "--out", "unused"])
    output = capsys.readouterr()
    assert code == EXIT_MISSING_DEPENDENCY
    assert "no CUDA GPU is present" in output.out + output.err


def test_layer_tables_match_upstream_counts():
    assert len(DLA34_LAYERS) == 16 and len(RESDCN18_LAYERS) == 3
    names = [name for name, *_ in DLA34_LAYERS]
    assert len(set(names)) == 16
    # 384x1280 input: the 64->64 nodes run at 96x320, the 512->256 projection at 12x40.
    layers = {l.name: l for l in model_layers("dla_34", (384, 1280), 1)}
    assert (layers["dla_up.ida_2.node_1"].height, layers["dla_up.ida_2.node_1"].width) == (96, 320)
    assert (layers["dla_up.ida_0.proj_1"].height, layers["dla_up.ida_0.proj_1"].width) == (12, 40)


def test_roofline_floor_is_the_larger_of_compute_and_memory_time():
    layer = model_layers("dla_34", (512, 512), 1)[7]  # 64->64 at 128x128
    gemm = 2.0 * 128 * 128 * 64 * 64 * 9
    assert layer.gemm_flops() == gemm
    memory_us = layer.min_bytes(2) / (H100_SXM_CEILINGS["hbm_tbps"] * 1e12) * 1e6
    compute_us = (gemm / (H100_SXM_CEILINGS["fp16_tensor_tflops"] * 1e12)
                  + layer.sampling_flops() / (H100_SXM_CEILINGS["fp32_simt_tflops"] * 1e12)) * 1e6
    assert layer.floor_us("fp16", H100_SXM_CEILINGS) == pytest.approx(max(memory_us, compute_us))
    eight = model_layers("dla_34", (512, 512), 8)[7]
    assert eight.floor_us("fp16", H100_SXM_CEILINGS) > 7 * layer.floor_us("fp16", H100_SXM_CEILINGS)
    assert layer.floor_us("fp32", H100_SXM_CEILINGS) > layer.floor_us("fp16", H100_SXM_CEILINGS)
