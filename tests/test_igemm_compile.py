"""CI compiles the implicit-GEMM kernel header for Hopper and Ampere, all three dtypes."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
HEADER = "dcn_ext/csrc/kernels/modulated_deform_conv_igemm.cuh"

TRANSLATION_UNIT = f"""
#include "{HEADER}"
template cudaError_t dcn::launch_igemm_forward<float>(const dcn::ForwardArgs<float>&, void*, cudaStream_t);
template cudaError_t dcn::launch_igemm_forward<__half>(const dcn::ForwardArgs<__half>&, void*, cudaStream_t);
template cudaError_t dcn::launch_igemm_forward<__nv_bfloat16>(const dcn::ForwardArgs<__nv_bfloat16>&, void*,
                                                              cudaStream_t);
template bool dcn::igemm_supported<__half>(const dcn::ConvGeometry&);
template size_t dcn::igemm_workspace_bytes<__nv_bfloat16>(const dcn::ConvGeometry&);
template size_t dcn::igemm_workspace_bytes<__half>(const dcn::ForwardArgs<__half>&);
template bool dcn::igemm_channels_last_supported<float>(const dcn::ConvGeometry&);
template int dcn::igemm_counter_count<__half>(const dcn::ConvGeometry&);
template size_t dcn::igemm_packed_weight_elements<__nv_bfloat16>(const dcn::ConvGeometry&);
template cudaError_t dcn::launch_igemm_pack_weights<__half>(const dcn::ConvGeometry&, const __half*, __half*,
                                                            cudaStream_t);
"""


@pytest.mark.skipif(shutil.which("nvcc") is None, reason="nvcc is not installed: cannot compile the CUDA kernels")
@pytest.mark.parametrize("arch", ["90a", "90", "80"])
def test_igemm_header_compiles(tmp_path, arch):
    source = tmp_path / "igemm_instantiate.cu"
    source.write_text(TRANSLATION_UNIT, encoding="utf-8")
    wgmma = arch == "90a"  # as dcn_ext's setup.py and trt_plugin's CMake build for an H100
    result = subprocess.run(
        ["nvcc", "-std=c++17", f"-I{ROOT}", f"-gencode=arch=compute_{arch},code=sm_{arch}",
         *(["-DDCN_IGEMM_WGMMA=1"] if wgmma else []),
         "-Xptxas=-v", "-c", str(source), "-o", str(tmp_path / "igemm.o")],
        capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-4000:]
    # The tensor-core kernels must really be there: one per mma.sync tile shape and dtype
    # (9 shapes x fp16 / bf16 / fp32), and with wgmma one per wgmma shape and dtype whose
    # tiles fit an SM's shared memory (5 shapes x fp16 / bf16, 4 for fp32: not 64x256).
    compiled = [line for line in result.stderr.splitlines() if "Compiling entry function" in line]
    assert sum("igemm_mma_kernel" in line for line in compiled) == 27, result.stderr[-2000:]
    wgmma_kernels = [line for line in compiled if "igemm_wgmma_kernel" in line]
    assert len(wgmma_kernels) == (14 if wgmma else 0), result.stderr[-2000:]
    assert sum("igemm_wgmma_kernelIf" in line for line in wgmma_kernels) == (4 if wgmma else 0)
    # The warp-specialised wgmma kernels: 4 shapes (64 or 32 rows, 64 or 128 outputs) x 3
    # dtypes, the 128-row one for fp32 only and the two 256-output ones (64 or 32 rows) for
    # fp16 / bf16 only, only where wgmma is built.
    assert sum("igemm_ws_kernel" in line for line in compiled) == (17 if wgmma else 0), result.stderr[-2000:]
    assert "spill" in result.stderr  # ptxas printed its resource report


@pytest.mark.skipif(shutil.which("nvcc") is None, reason="nvcc is not installed: cannot compile the CUDA kernels")
def test_ab_timing_tool_builds_and_refuses_bad_arguments(tmp_path):
    # bench/igemm_ab.cu builds against a directory of kernel headers (main's or an
    # experiment's); its argument errors come before any CUDA call, so they run here too.
    binary = tmp_path / "igemm_ab"
    result = subprocess.run(
        ["nvcc", "-std=c++17", "-O1", f"-I{ROOT / 'dcn_ext/csrc/kernels'}", "-gencode=arch=compute_90a,code=sm_90a",
         "-DDCN_IGEMM_WGMMA=1", str(ROOT / "bench/igemm_ab.cu"), "-o", str(binary)],
        capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-4000:]
    for args, named in ((["--type", "fp8"], "unknown --type fp8"), (["--batch", "0"], "--batch must be at least 1"),
                        (["--tile", "99"], "--tile must name a Tile"), (["--split"], "missing value for --split"),
                        (["--fast"], "unknown argument --fast"),
                        # a flag it knows, then a bad value: the flag itself was taken
                        (["--pack-per-call", "--batch", "0"], "--batch must be at least 1")):
        refused = subprocess.run([str(binary), *args], capture_output=True, text=True, timeout=60)
        assert refused.returncode == 2, (args, refused.stdout, refused.stderr)
        assert named in refused.stderr and "usage: igemm_ab" in refused.stderr, (args, refused.stderr)
        assert "[--pack-per-call]" in refused.stderr, refused.stderr


def test_ab_timing_tool_times_the_dla34_layers_of_the_bench():
    # igemm_ab.cu lists the 16 DLA-34 DCN layers as (cin, cout, stride, count); they must be
    # bench/dcn_layers.py's, which the committed bench runs.
    import re
    import sys
    from collections import Counter
    sys.path.insert(0, str(ROOT))
    from bench.dcn_layers import DLA34_LAYERS
    text = (ROOT / "bench/igemm_ab.cu").read_text(encoding="utf-8")
    table = re.search(r"kDla34\[\] = \{(.*?)\};", text, re.S).group(1)
    listed = {(int(a), int(b), int(c)): int(d)
              for a, b, c, d in re.findall(r"\{(\d+),\s*(\d+),\s*(\d+),\s*(\d+)\}", table)}
    expected = Counter((cin, cout, stride) for _, cin, cout, stride in DLA34_LAYERS)
    assert listed == dict(expected)
    assert sum(listed.values()) == 16


@pytest.mark.skipif(shutil.which("nvcc") is None, reason="nvcc is not installed: cannot compile the CUDA kernels")
@pytest.mark.parametrize("probe", ["chain_floor", "texture_probe"])
def test_standalone_probe_builds_and_refuses_bad_arguments(tmp_path, probe):
    # bench/chain_floor.cu (bench/NOTES.md v21e) and bench/texture_probe.cu (v38) check
    # their arguments before any CUDA call.
    binary = tmp_path / probe
    result = subprocess.run(
        ["nvcc", "-std=c++17", "-O1", "-gencode=arch=compute_90a,code=sm_90a", str(ROOT / f"bench/{probe}.cu"),
         "-o", str(binary)], capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-4000:]
    for args in (["--json"], ["--fast"]):
        refused = subprocess.run([str(binary), *args], capture_output=True, text=True, timeout=60)
        assert refused.returncode == 2 and f"usage: {probe} [--json FILE]" in refused.stderr, (args, refused.stderr)
