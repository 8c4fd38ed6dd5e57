"""Build the TensorRT DCNv2 plugin (trt_plugin/) in place for a patched tree.

The plugin is compiled against TensorRT's public headers only (it does not link
libnvinfer), so it builds wherever the headers, CMake and nvcc are, TensorRT installed or
not. The build directory is ``<tree>/trt_plugin_build``; CMake writes
``dcn_trt_plugin.json`` there naming the library and the TensorRT version, which is how
``build-engine`` finds the plugin later (:func:`find_plugin_library`).
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Sequence, Union

from patcher.errors import BuildError, MissingDependencyError
from patcher.progress import NULL_SINK, ProgressSink

BUILD_DIRNAME = "trt_plugin_build"
RECORD_NAME = "dcn_trt_plugin.json"  # written by trt_plugin/CMakeLists.txt
LOG_NAME = "build.log"
HEADERS_MISSING = "TensorRT plugin skipped: headers not found (set TENSORRT_ROOT)"
DEFAULT_CUDA_ARCH = "90a"  # Hopper with wgmma (the fast fp16/bf16 kernels)

# Where a patched tree keeps its copy of the dcn package (contract.json, csrc/kernels).
TREE_DCN_DIR = Path("src/lib/models/networks/dcn")
_REPO = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class PluginBuildResult:
    library_path: Path
    tensorrt_version: Optional[str]
    build_dir: Path
    cuda_arch: str
    log_path: Path
    harness_path: Optional[Path] = None


def plugin_source_dir() -> Path:
    """The CMake project of the plugin (trt_plugin/ beside the patcher package)."""
    source = _REPO / "trt_plugin"
    if not (source / "CMakeLists.txt").is_file():
        raise MissingDependencyError(
            f"TensorRT plugin skipped: its sources are not installed (looked for {source}/CMakeLists.txt)",
            tip="run centernet-patch from a checkout of the centernet-patch repository")
    return source


def dcn_dir_for(tree_or_dest: Path) -> Path:
    """The dcn package the plugin is built from: the tree's own copy when it has one (so the
    plugin matches what that tree exports), else this repository's dcn_ext."""
    for candidate in (Path(tree_or_dest) / TREE_DCN_DIR, _REPO / "dcn_ext"):
        if (candidate / "contract.json").is_file() and (candidate / "csrc" / "kernels").is_dir():
            return candidate
    raise MissingDependencyError(
        f"TensorRT plugin skipped: no dcn package with contract.json and csrc/kernels in "
        f"{Path(tree_or_dest) / TREE_DCN_DIR} or {_REPO / 'dcn_ext'}")


def find_tensorrt_include(tensorrt_root: Optional[Union[str, Path]] = None) -> Optional[Path]:
    """TensorRT's include directory: under ``tensorrt_root`` when given (and only there),
    else the usual places (TENSORRT_ROOT, system paths, .vendor), as `doctor` reports them."""
    if tensorrt_root is not None:
        root = Path(tensorrt_root)
        for include in (root / "include", root):
            if (include / "NvInferRuntime.h").is_file():
                return include
        return None
    from patcher.doctor import find_tensorrt_headers

    found = find_tensorrt_headers()
    return found[0] if found else None


def detect_cuda_arch() -> Optional[str]:
    """The CUDA architecture for the first GPU ("90a" for an H100, "86", ...), or None without one."""
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return None
    try:
        done = subprocess.run([smi, "--query-gpu=compute_cap", "--format=csv,noheader"],
                              capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    first = done.stdout.strip().splitlines()[0].strip() if done.returncode == 0 and done.stdout.strip() else ""
    arch = first.replace(".", "")
    if not arch.isdigit():
        return None
    return "90a" if arch == "90" else arch  # Hopper: the sm_90a target has wgmma


def plugin_cuda_arch(requested: Optional[str], detected: Optional[str], nvcc_release: Optional[str]) -> str:
    """The CMake CUDA architectures for the plugin: the caller's as given; else the GPU's, or
    DEFAULT_CUDA_ARCH without one, where 90a (Hopper with wgmma) falls back to 90 when nvcc
    is older than CUDA 12, which has no sm_90a."""
    if requested:
        return requested
    arch = detected or DEFAULT_CUDA_ARCH
    major = (nvcc_release or "").split(".")[0]
    if arch == "90a" and not (major.isdigit() and int(major) >= 12):
        return "90"
    return arch


def find_plugin_library(start: Path) -> Optional[Path]:
    """The plugin library recorded in the nearest ``trt_plugin_build/`` at or above ``start``
    (a model exported into a tree finds that tree's plugin)."""
    start = Path(start).resolve()
    for directory in [start, *start.parents]:
        record = directory / BUILD_DIRNAME / RECORD_NAME
        if record.is_file():
            try:
                library = Path(json.loads(record.read_text(encoding="utf-8"))["library"])
            except (ValueError, KeyError, OSError):
                continue
            if library.is_file():
                return library
    return None


def _tail(text: str, lines: int = 40) -> str:
    return "\n".join(text.splitlines()[-lines:])


def _run_logged(command: Sequence[str], log_path: Path, what: str) -> str:
    try:
        done = subprocess.run(list(command), capture_output=True, text=True)
    except OSError as error:
        raise BuildError(f"{what} could not start: {error}", command=command) from error
    output = done.stdout + done.stderr
    with log_path.open("a", encoding="utf-8") as log:
        log.write("$ " + " ".join(command) + "\n" + output + "\n")
    if done.returncode != 0:
        if HEADERS_MISSING in output:  # CMake's own search disagreed with ours
            raise MissingDependencyError(HEADERS_MISSING)
        raise BuildError(f"{what} failed (exit code {done.returncode})", command=command,
                         log_tail=_tail(output), log_path=str(log_path))
    return output


def build_plugin(tree_or_dest: Path, *, tensorrt_root: Optional[Union[str, Path]] = None,
                 cuda_arch: Optional[str] = None, sink: ProgressSink = NULL_SINK,
                 harness: bool = False, strict_warnings: bool = False,
                 jobs: Optional[int] = None) -> PluginBuildResult:
    """Configures and builds the plugin into ``<tree_or_dest>/trt_plugin_build``.

    ``cuda_arch``: CMake CUDA architectures ("90", "80;90"); default: the GPU's, else 90.
    ``harness``: also build the test harness (tools/dcnv2Harness.cpp).
    ``strict_warnings``: any compiler warning fails the build.
    Raises MissingDependencyError when TensorRT's headers, CMake or nvcc are absent, and
    BuildError (command and log tail) when a build step fails.
    """
    include = find_tensorrt_include(tensorrt_root)
    if include is None:
        raise MissingDependencyError(
            HEADERS_MISSING,
            tip=(f"no NvInferRuntime.h under {tensorrt_root}" if tensorrt_root is not None else
                 "point TENSORRT_ROOT at a TensorRT install or at TensorRT's source tree (include/)"))
    cmake = shutil.which("cmake")
    if cmake is None:
        raise MissingDependencyError("TensorRT plugin skipped: cmake not found",
                                     tip="install CMake 3.25 or newer")
    from patcher.doctor import find_nvcc

    nvcc = find_nvcc()
    if nvcc is None:
        raise MissingDependencyError("TensorRT plugin skipped: nvcc not found",
                                     tip="install the CUDA toolkit or set CUDA_HOME")
    source = plugin_source_dir()
    dcn_dir = dcn_dir_for(Path(tree_or_dest))
    from patcher.doctor import nvcc_release

    detected = None if cuda_arch else detect_cuda_arch()
    if cuda_arch is None and detected is None:
        sink.warn(f"no GPU found: building the TensorRT plugin for CUDA architecture "
                  f"{DEFAULT_CUDA_ARCH} (pass another with cuda_arch)")
    arch = plugin_cuda_arch(cuda_arch, detected, nvcc_release(nvcc))
    build_dir = Path(tree_or_dest) / BUILD_DIRNAME
    build_dir.mkdir(parents=True, exist_ok=True)
    log_path = build_dir / LOG_NAME
    log_path.write_text("", encoding="utf-8")
    configure: List[str] = [
        cmake, "-S", str(source), "-B", str(build_dir),
        "-DCMAKE_BUILD_TYPE=Release",
        f"-DCMAKE_CUDA_COMPILER={nvcc}",
        f"-DCMAKE_CUDA_ARCHITECTURES={arch}",
        f"-DTENSORRT_ROOT={include}",
        f"-DDCN_DIR={dcn_dir}",
        f"-DDCN_BUILD_HARNESS={'ON' if harness else 'OFF'}",
        f"-DDCN_WARNINGS_AS_ERRORS={'ON' if strict_warnings else 'OFF'}",
    ]
    targets = ["dcn_trt_plugin"] + (["dcnv2_harness"] if harness else [])
    build = [cmake, "--build", str(build_dir), "--target", *targets,
             "-j", str(jobs or max(1, os.cpu_count() or 1))]
    with sink.step("Configuring the TensorRT plugin"):
        _run_logged(configure, log_path, "configuring the TensorRT plugin")
    with sink.step(f"Building the TensorRT plugin (CUDA arch {arch})"):
        _run_logged(build, log_path, "building the TensorRT plugin")
    record_path = build_dir / RECORD_NAME
    try:
        record = json.loads(record_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise BuildError(f"the plugin build did not write {record_path}: {error}",
                         command=build, log_path=str(log_path)) from error
    library = Path(record["library"])
    if not library.is_file():
        raise BuildError(f"the plugin build reported {library}, which does not exist",
                         command=build, log_path=str(log_path))
    sink.info(f"TensorRT plugin: {library} (TensorRT {record.get('tensorrt_version') or '?'} headers)")
    return PluginBuildResult(
        library_path=library,
        tensorrt_version=record.get("tensorrt_version") or None,
        build_dir=build_dir,
        cuda_arch=arch,
        log_path=log_path,
        harness_path=(build_dir / "dcnv2_harness") if harness else None,
    )
