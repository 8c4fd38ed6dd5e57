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
@pytest.mark.parametrize("arch", ["90", "80"])
def test_igemm_header_compiles(tmp_path, arch):
    source = tmp_path / "igemm_instantiate.cu"
    source.write_text(TRANSLATION_UNIT, encoding="utf-8")
    result = subprocess.run(
        ["nvcc", "-std=c++17", f"-I{ROOT}", f"-gencode=arch=compute_{arch},code=sm_{arch}",
         "-Xptxas=-v", "-c", str(source), "-o", str(tmp_path / "igemm.o")],
        capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-4000:]
    # The tensor-core kernels must really be there (one per tile shape and 16-bit dtype:
    # 9 shapes, 4- and 8-warp, x fp16 / bf16).
    assert result.stderr.count("igemm_mma_kernel") >= 18, result.stderr[-2000:]
    assert "spill" in result.stderr  # ptxas printed its resource report
