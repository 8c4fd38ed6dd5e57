"""What this machine has for each stage of the pipeline, and what each absence disables.

``diagnose()`` looks (silently: it never prints) and returns one :class:`Finding` per
component; ``patcher/commands/doctor.py`` draws them. Nothing here installs or changes
anything. Every probe is bounded in time so that a hung driver cannot hang the doctor.
"""
from __future__ import annotations

import ctypes.util
import importlib
import os
import platform
import re
import shutil
import subprocess
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

from patcher.progress import NULL_SINK, ProgressSink
from patcher.resources import vendor_dir

OK, MISSING, BROKEN = "ok", "missing", "broken"
PROBE_TIMEOUT_S = 15

# The pipeline's stages, in the order a user meets them.
STAGES = ("apply", "build dcn_ext (CPU)", "build dcn_ext (CUDA)", "build trt_plugin",
          "export", "verify", "build-engine", "bench (GPU)")


@dataclass
class Finding:
    component: str
    status: str  # OK, MISSING or BROKEN (present but not working)
    detail: str  # version, path, or why it is missing/broken
    needed_for: Tuple[str, ...] = ()  # stages (from STAGES) that cannot run without it
    when_missing: str = ""  # what its absence disables, in words

    @property
    def ok(self) -> bool:
        return self.status == OK


@dataclass
class DoctorReport:
    findings: List[Finding] = field(default_factory=list)

    def __getitem__(self, component: str) -> Finding:
        for finding in self.findings:
            if finding.component == component:
                return finding
        raise KeyError(f"no finding named {component!r}; have "
                       f"{[f.component for f in self.findings]}")

    def stage_blockers(self) -> Dict[str, List[str]]:
        """Each stage -> the components it lacks (empty: the stage can run here)."""
        return {stage: [f.component for f in self.findings
                        if stage in f.needed_for and not f.ok] for stage in STAGES}

    def to_dict(self) -> dict:
        return {"findings": [asdict(f) for f in self.findings],
                "stages": {stage: {"ready": not lacks, "missing": lacks}
                           for stage, lacks in self.stage_blockers().items()}}


# -- small probes -----------------------------------------------------------------------

def _run_output(command: Sequence[str]) -> Optional[str]:
    """stdout+stderr of ``command``, or None if it cannot run or fails."""
    try:
        done = subprocess.run(list(command), capture_output=True, text=True,
                              timeout=PROBE_TIMEOUT_S)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout + done.stderr if done.returncode == 0 else None


def _run_version(command: Sequence[str]) -> Optional[str]:
    """The first non-empty line of ``command``'s output, or None if it cannot run."""
    output = _run_output(command)
    if output is None:
        return None
    return next((line.strip() for line in output.splitlines() if line.strip()), "")


def _module_version(name: str) -> Tuple[Optional[object], str]:
    """(module, version) or (None, why it cannot be imported)."""
    try:
        module = importlib.import_module(name)
    except Exception as error:  # ImportError, or a broken install raising anything
        return None, f"cannot import {name}: {type(error).__name__}: {error}"
    return module, str(getattr(module, "__version__", "unknown version"))


# -- TensorRT discovery (also used by the TensorRT-dependent commands) --------------------

def tensorrt_include_candidates() -> List[Path]:
    """Where TensorRT's public headers are looked for, in order."""
    candidates = []
    root = os.environ.get("TENSORRT_ROOT")
    if root:
        candidates += [Path(root) / "include", Path(root)]
    candidates += [Path("/usr/include/x86_64-linux-gnu"), Path("/usr/include"),
                   Path("/usr/local/tensorrt/include"), Path.cwd() / ".vendor/TensorRT/include",
                   vendor_dir() / "TensorRT/include"]
    unique: List[Path] = []
    for path in candidates:
        if path not in unique:
            unique.append(path)
    return unique


def tensorrt_library_candidates() -> List[Path]:
    candidates = []
    root = os.environ.get("TENSORRT_ROOT")
    if root:
        candidates += [Path(root) / "lib", Path(root) / "lib64"]
    candidates += [Path(p) for p in os.environ.get("LD_LIBRARY_PATH", "").split(os.pathsep) if p]
    candidates += [Path("/usr/lib/x86_64-linux-gnu"), Path("/usr/local/tensorrt/lib")]
    return candidates


_DEFINE = re.compile(r"^\s*#\s*define\s+(\w+)\s+(\w+)", re.MULTILINE)


def read_tensorrt_version(header: Path) -> Optional[str]:
    """"major.minor.patch" from NvInferVersion.h (following one level of macro aliases,
    as TensorRT 10+ defines NV_TENSORRT_MAJOR via TRT_MAJOR_ENTERPRISE), else None."""
    defines = dict(_DEFINE.findall(header.read_text(encoding="utf-8", errors="replace")))

    def value(name: str) -> Optional[str]:
        seen = set()
        token = defines.get(name)
        while token is not None and not token.isdigit() and token not in seen:
            seen.add(token)
            token = defines.get(token)
        return token if token is not None and token.isdigit() else None

    parts = [value(f"NV_TENSORRT_{part}") for part in ("MAJOR", "MINOR", "PATCH")]
    if parts[0] is None:
        return None
    return ".".join(p if p is not None else "0" for p in parts)


def find_tensorrt_headers() -> Optional[Tuple[Path, Optional[str]]]:
    """(include directory, version) of the first TensorRT headers found, else None."""
    for include in tensorrt_include_candidates():
        header = include / "NvInferVersion.h"
        if header.is_file() and (include / "NvInfer.h").is_file():
            return include, read_tensorrt_version(header)
    return None


def find_libnvinfer() -> Optional[Path]:
    for directory in tensorrt_library_candidates():
        for match in sorted(directory.glob("libnvinfer.so*")) if directory.is_dir() else []:
            return match
    found = ctypes.util.find_library("nvinfer")
    return Path(found) if found else None


def find_nvcc() -> Optional[Path]:
    for home in (os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH")):
        if home and (Path(home) / "bin/nvcc").is_file():
            return Path(home) / "bin/nvcc"
    on_path = shutil.which("nvcc")
    if on_path:
        return Path(on_path)
    default = Path("/usr/local/cuda/bin/nvcc")
    return default if default.is_file() else None


# -- the checks -----------------------------------------------------------------------------

def check_python() -> Finding:
    version = platform.python_version()
    good = sys.version_info >= (3, 10)
    return Finding("Python", OK if good else BROKEN,
                   f"{version} ({sys.executable})" + ("" if good else "; 3.10+ is required"),
                   needed_for=STAGES, when_missing="everything (centernet-patch needs 3.10+)")


def check_git() -> Finding:
    line = _run_version([os.environ.get("GIT_PYTHON_GIT_EXECUTABLE", "git"), "--version"])
    return Finding("git", OK if line else MISSING, line or "git executable not on PATH",
                   needed_for=("apply",),
                   when_missing="cloning the upstream and checking a checkout's commit")


def check_torch() -> List[Finding]:
    torch, version = _module_version("torch")
    if torch is None:
        return [Finding("PyTorch", MISSING, version,
                        needed_for=("build dcn_ext (CPU)", "build dcn_ext (CUDA)", "export",
                                    "verify", "bench (GPU)"),
                        when_missing="building dcn_ext, export, verify, benchmarks")]
    cuda_build = getattr(torch.version, "cuda", None)
    findings = [
        Finding("PyTorch", OK, version,
                needed_for=("build dcn_ext (CPU)", "build dcn_ext (CUDA)", "export", "verify",
                            "bench (GPU)")),
        Finding("PyTorch CUDA build", OK if cuda_build else MISSING,
                f"CUDA {cuda_build}" if cuda_build else "CPU-only build of torch",
                needed_for=("build dcn_ext (CUDA)", "bench (GPU)"),
                when_missing="the CUDA kernels of dcn_ext (the CPU kernels still build)"),
    ]
    try:
        available = bool(torch.cuda.is_available())
        count = torch.cuda.device_count() if available else 0
    except Exception as error:  # a broken driver raises here rather than returning False
        available, count = False, 0
        findings.append(Finding("torch.cuda", BROKEN, f"{type(error).__name__}: {error}",
                                needed_for=("bench (GPU)",)))
    else:
        findings.append(Finding(
            "torch.cuda", OK if available else MISSING,
            f"available, {count} device(s)" if available else "not available",
            needed_for=("bench (GPU)",),
            when_missing="running dcn_ext on a GPU; export and verify run on CPU"))
    return findings


def nvcc_release(nvcc: Optional[Path]) -> Optional[str]:
    """The CUDA release nvcc reports ("13.0"), "unknown version", or None when it does not run."""
    output = _run_output([str(nvcc), "--version"]) if nvcc else None
    if output is None:
        return None
    match = re.search(r"release ([\d.]+)", output)
    return match.group(1) if match else "unknown version"


def check_nvcc() -> Finding:
    nvcc = find_nvcc()
    release = nvcc_release(nvcc)
    return Finding("nvcc", OK if release else MISSING,
                   f"CUDA {release} ({nvcc})" if release else "not found (CUDA_HOME, PATH, "
                   "/usr/local/cuda)",
                   needed_for=("build dcn_ext (CUDA)", "build trt_plugin"),
                   when_missing="compiling the CUDA kernels of dcn_ext and the TensorRT plugin")


def check_cxx() -> Finding:
    candidates = [os.environ.get("CXX"), "c++", "g++", "clang++"]
    for name in filter(None, candidates):
        path = shutil.which(name)
        line = _run_version([path, "--version"]) if path else None
        if line:
            return Finding("C++ compiler", OK, f"{line} ({path})",
                           needed_for=("build dcn_ext (CPU)", "build dcn_ext (CUDA)",
                                       "build trt_plugin"))
    return Finding("C++ compiler", MISSING, "none of $CXX, c++, g++, clang++ found",
                   needed_for=("build dcn_ext (CPU)", "build dcn_ext (CUDA)",
                               "build trt_plugin"),
                   when_missing="building dcn_ext and the TensorRT plugin")


def check_cmake() -> Finding:
    line = _run_version(["cmake", "--version"])
    return Finding("CMake", OK if line else MISSING, line or "cmake not on PATH",
                   needed_for=("build trt_plugin",), when_missing="building the TensorRT plugin")


def check_ninja() -> Finding:
    line = _run_version(["ninja", "--version"])
    # optional: torch's extension builder falls back to plain setuptools without it
    return Finding("ninja", OK if line else MISSING,
                   f"ninja {line}" if line else "ninja not on PATH",
                   when_missing="parallel extension builds (builds still work, slower)")


def check_onnx() -> List[Finding]:
    onnx, version = _module_version("onnx")
    onnxscript, script_version = _module_version("onnxscript")
    return [
        Finding("ONNX", OK if onnx else MISSING, version, needed_for=("export", "verify"),
                when_missing="export and verify"),
        Finding("onnxscript", OK if onnxscript else MISSING, script_version,
                needed_for=("export",), when_missing="torch's ONNX exporter (dynamo=True)"),
    ]


def deform_conv_runs(onnxruntime) -> Tuple[bool, str]:
    """Run a one-node DeformConv (opset 19) model and compare it with a plain convolution:
    zero offsets and a constant mask make DeformConv equal to mask * conv + bias."""
    import numpy as np
    from onnx import TensorProto, helper

    batch, channels, outputs, size, kernel = 1, 2, 3, 5, 3
    out_size = size - kernel + 1
    graph = helper.make_graph(
        [helper.make_node("DeformConv", ["X", "W", "offset", "B", "mask"], ["Y"],
                          kernel_shape=[kernel, kernel])],
        "doctor_deform_conv",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, [batch, channels, size, size]),
         helper.make_tensor_value_info("W", TensorProto.FLOAT,
                                       [outputs, channels, kernel, kernel]),
         helper.make_tensor_value_info("offset", TensorProto.FLOAT,
                                       [batch, 2 * kernel * kernel, out_size, out_size]),
         helper.make_tensor_value_info("B", TensorProto.FLOAT, [outputs]),
         helper.make_tensor_value_info("mask", TensorProto.FLOAT,
                                       [batch, kernel * kernel, out_size, out_size])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT,
                                       [batch, outputs, out_size, out_size])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 19)])
    rng = np.random.default_rng(0)
    x = rng.standard_normal((batch, channels, size, size)).astype(np.float32)
    w = rng.standard_normal((outputs, channels, kernel, kernel)).astype(np.float32)
    b = rng.standard_normal(outputs).astype(np.float32)
    mask_value = 0.5
    try:
        session = onnxruntime.InferenceSession(model.SerializeToString(),
                                               providers=["CPUExecutionProvider"])
        (y,) = session.run(None, {
            "X": x, "W": w, "B": b,
            "offset": np.zeros((batch, 2 * kernel * kernel, out_size, out_size), np.float32),
            "mask": np.full((batch, kernel * kernel, out_size, out_size), mask_value,
                            np.float32)})
    except Exception as error:
        return False, f"{type(error).__name__}: {str(error).splitlines()[0]}"
    windows = np.lib.stride_tricks.sliding_window_view(x, (kernel, kernel), axis=(2, 3))
    expected = mask_value * np.einsum("bchwij,ocij->bohw", windows, w) + b[None, :, None, None]
    error = float(np.max(np.abs(y - expected)))
    if error > 1e-4:
        return False, f"runs but disagrees with a plain convolution (max error {error:.2e})"
    return True, f"runs DeformConv (opset 19), max error {error:.1e} vs plain conv"


def check_onnxruntime() -> Finding:
    onnxruntime, version = _module_version("onnxruntime")
    if onnxruntime is None:
        return Finding("ONNX Runtime", MISSING, version, needed_for=("verify",),
                       when_missing="verify (ONNX Runtime is the reference runner)")
    works, detail = deform_conv_runs(onnxruntime)
    return Finding("ONNX Runtime", OK if works else BROKEN, f"{version}; {detail}",
                   needed_for=("verify",),
                   when_missing="verify's check of exported DCN layers (needs onnxruntime>=1.25)")


def check_tensorrt_python() -> Finding:
    tensorrt, version = _module_version("tensorrt")
    return Finding("TensorRT Python", OK if tensorrt else MISSING,
                   f"tensorrt {version}" if tensorrt else "tensorrt is not installed",
                   needed_for=("build-engine",),
                   when_missing="build-engine and TensorRT benchmarks")


def check_tensorrt_headers() -> Finding:
    found = find_tensorrt_headers()
    if found is None:
        looked = ", ".join(str(p) for p in tensorrt_include_candidates())
        return Finding("TensorRT headers", MISSING, f"NvInferVersion.h not found in {looked}",
                       needed_for=("build trt_plugin",),
                       when_missing="compiling the TensorRT plugin (set TENSORRT_ROOT)")
    include, version = found
    return Finding("TensorRT headers", OK, f"TensorRT {version or 'unknown version'} ({include})",
                   needed_for=("build trt_plugin",))


def check_libnvinfer() -> Finding:
    library = find_libnvinfer()
    return Finding("libnvinfer", OK if library else MISSING,
                   str(library) if library else "libnvinfer.so not found (TENSORRT_ROOT/lib, "
                   "LD_LIBRARY_PATH, system library paths)",
                   needed_for=("build-engine",),
                   when_missing="loading the plugin into TensorRT, building and running engines")


def check_gpu() -> Finding:
    smi = shutil.which("nvidia-smi")
    if smi:
        try:
            done = subprocess.run([smi, "--query-gpu=name,driver_version,memory.total",
                                   "--format=csv,noheader"], capture_output=True, text=True,
                                  timeout=PROBE_TIMEOUT_S)
            gpus = [line.strip() for line in done.stdout.splitlines() if line.strip()]
        except (OSError, subprocess.SubprocessError):
            gpus = []
        if gpus:
            return Finding("GPU", OK, "; ".join(gpus), needed_for=("build-engine", "bench (GPU)"))
    return Finding("GPU", MISSING,
                   "no NVIDIA GPU visible (nvidia-smi " + ("found none" if smi else "not found")
                   + ")",
                   needed_for=("build-engine", "bench (GPU)"),
                   when_missing="TensorRT engines and GPU benchmarks; everything else runs on CPU")


CHECKS: Tuple[Callable[[], object], ...] = (
    check_python, check_git, check_torch, check_nvcc, check_cxx, check_cmake, check_ninja,
    check_onnx, check_onnxruntime, check_tensorrt_python, check_tensorrt_headers,
    check_libnvinfer, check_gpu)


def diagnose(sink: ProgressSink = NULL_SINK) -> DoctorReport:
    """Look at this machine; one Finding per component. Never raises for a missing piece."""
    report = DoctorReport()
    with sink.step("Checking this machine"):
        for check in CHECKS:
            result = check()
            report.findings.extend(result if isinstance(result, list) else [result])
    return report
