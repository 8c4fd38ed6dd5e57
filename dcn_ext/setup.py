"""Builds the compiled ops of this package (``_C``) next to this file.

    cd <this folder> && python setup.py build_ext --inplace

Works in the centernet-patch repository (dcn_ext/) and in a patched CenterNet tree
(src/lib/models/networks/dcn/). CUDA kernels are built when torch has CUDA and nvcc is
found, unless told otherwise:

    DCN_EXT_CUDA=auto|on|off     (default auto; "on" fails if CUDA cannot be built)
    TORCH_CUDA_ARCH_LIST="9.0a"  (default: the visible GPU's, 9.0a for an H100; torch's list if none)
    MAX_JOBS=N                   (parallel compile jobs with ninja)
"""
from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path

from setuptools import setup

import torch
from torch.utils import cpp_extension

HERE = Path(__file__).resolve().parent
os.chdir(HERE)  # --inplace puts _C next to the sources wherever this is run from

CONTRACT = json.loads((HERE / "contract.json").read_text(encoding="utf-8"))
CUDA_MODES = ("auto", "on", "off")


def cuda_wanted() -> bool:
    mode = os.environ.get("DCN_EXT_CUDA", "auto").strip().lower()
    if mode not in CUDA_MODES:
        sys.exit(f"DCN_EXT_CUDA is not valid: got: {mode!r} expected: one of {', '.join(CUDA_MODES)}")
    if mode == "off":
        print("dcn_ext: building the CPU kernels only (DCN_EXT_CUDA=off)")
        return False
    missing = []
    if torch.version.cuda is None:
        missing.append(f"torch {torch.__version__} was built without CUDA")
    if cpp_extension.CUDA_HOME is None:
        missing.append("nvcc was not found (set CUDA_HOME)")
    if missing:
        if mode == "on":
            sys.exit("dcn_ext: DCN_EXT_CUDA=on but " + "; ".join(missing))
        print("dcn_ext: building the CPU kernels only: " + "; ".join(missing))
        return False
    if not os.environ.get("TORCH_CUDA_ARCH_LIST") and not torch.cuda.is_available():
        print("dcn_ext: no GPU visible and TORCH_CUDA_ARCH_LIST unset: compiling for every "
              "architecture torch supports (slow); set TORCH_CUDA_ARCH_LIST, e.g. 9.0")
    return True


def arch_list() -> str:
    """TORCH_CUDA_ARCH_LIST for the build (set in the environment, which torch reads): the
    caller's, else the visible GPU's. Compute capability 9.0 becomes 9.0a, the target with
    Hopper's warpgroup MMA (wgmma), which the fast fp16/bf16 kernels use."""
    chosen = os.environ.get("TORCH_CUDA_ARCH_LIST", "").strip()
    if not chosen and torch.cuda.is_available():
        major, minor = torch.cuda.get_device_capability()
        # sm_90a needs CUDA 12 (torch's CUDA stands for the toolkit it builds with).
        cuda12 = int((torch.version.cuda or "0").split(".")[0]) >= 12
        chosen = f"{major}.{minor}" + ("a" if (major, minor) == (9, 0) and cuda12 else "")
        os.environ["TORCH_CUDA_ARCH_LIST"] = chosen
    return chosen


def wgmma_macro(arch: str) -> list:
    """DCN_IGEMM_WGMMA when the build targets sm_90a and not plain sm_90: the wgmma kernels
    exist only in sm_90a code, and a binary holding both could run the sm_90 one."""
    items = {item.replace("+PTX", "") for item in re.split(r"[;\s]+", arch) if item}
    if "9.0a" in items and "9.0" not in items:
        return [("DCN_IGEMM_WGMMA", "1")]
    if "9.0" in items:
        print("dcn_ext: building for sm_90 without the wgmma kernels (use TORCH_CUDA_ARCH_LIST=9.0a)")
    return []


def extension():
    macros = [
        ("DCN_TORCH_NAMESPACE", CONTRACT["torch_library_namespace"]),
        ("DCN_TORCH_OP", CONTRACT["torch_op_name"]),
    ]
    sources = ["csrc/modulated_deform_conv.cpp", "csrc/cpu/modulated_deform_conv_cpu.cpp"]
    cxx_flags = ["-O3"]
    if cuda_wanted():
        sources.append("csrc/cuda/modulated_deform_conv_cuda.cu")
        return cpp_extension.CUDAExtension(
            "_C", sources, define_macros=macros + wgmma_macro(arch_list()),
            extra_compile_args={"cxx": cxx_flags, "nvcc": ["-O3", "-lineinfo"]})
    return cpp_extension.CppExtension("_C", sources, define_macros=macros,
                                      extra_compile_args={"cxx": cxx_flags})


setup(
    name="centernet-patch-dcn-ext",
    ext_modules=[extension()],
    cmdclass={"build_ext": cpp_extension.BuildExtension},
)
