"""Build the DCN extension (and the TensorRT plugin) in place in a patched CenterNet tree.

The recipe's step, ``cd src/lib/models/networks/dcn && python setup.py build_ext
--inplace``, run as a subprocess with its output saved to a log; then the compiled
library is loaded in a fresh interpreter to prove it registers the op (with CUDA kernels
when they were asked for). The TensorRT plugin is built afterwards when TensorRT's headers
are found; when they are not, that part is skipped with the reason and the build still
succeeds.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Union

from patcher.errors import BuildError, MissingDependencyError, TargetError, UsageError
from patcher.progress import NULL_SINK, ProgressSink

DCN_PACKAGE_DIR = Path("src/lib/models/networks/dcn")
CUDA_MODES = ("auto", "on", "off")
LOG_NAME = "centernet-patch-build.log"  # under the package's build/ (a build output)
LOG_TAIL_LINES = 40
PLUGIN_NOT_DELIVERED = "TensorRT plugin skipped: patcher.trt_build is not available"


@dataclass(frozen=True)
class BuildReport:
    tree: Path
    dcn_dir: Path
    extension_path: Path
    cuda: bool  # the extension has CUDA kernels
    cuda_arch: Optional[str]  # TORCH_CUDA_ARCH_LIST used (None: torch's choice / CPU only)
    log_path: Path
    wall_time_s: float
    plugin_library: Optional[Path] = None
    plugin_skipped: Optional[str] = None  # why the TensorRT plugin was not built

    def summary(self) -> str:
        kernels = f"CPU+CUDA ({self.cuda_arch or 'visible GPU'})" if self.cuda else "CPU only"
        plugin = (f"TensorRT plugin {self.plugin_library}" if self.plugin_library
                  else self.plugin_skipped or "")
        return f"DCN extension {kernels} in {self.wall_time_s:.0f} s; {plugin}".rstrip("; ")


def normalize_cuda_arch(cuda_arch: str) -> str:
    """"9.0", "90", "8.6;9.0", "8.6 9.0+PTX" -> TORCH_CUDA_ARCH_LIST form ("8.6;9.0+PTX")."""
    items = [item for item in re.split(r"[;,\s]+", cuda_arch.strip()) if item]
    normalized = []
    for item in items:
        match = re.fullmatch(r"(\d+)(?:\.(\d+))?(a?)(\+PTX)?", item, flags=re.IGNORECASE)
        if not match:
            raise UsageError(f"--cuda-arch is not valid: got: {cuda_arch!r} expected: compute "
                             f"capabilities such as 9.0, 90 or '8.6;9.0'")
        major, minor, specific, ptx = match.groups()
        if minor is None:  # "90" -> "9.0"
            if len(major) < 2:
                raise UsageError(f"--cuda-arch is not valid: got: {item!r} "
                                 f"expected: e.g. 9.0 or 90")
            major, minor = major[:-1], major[-1]
        normalized.append(f"{int(major)}.{minor}" + specific.lower() + ("+PTX" if ptx else ""))
    if not normalized:
        raise UsageError(f"--cuda-arch is not valid: got: {cuda_arch!r} expected: e.g. 9.0")
    return ";".join(normalized)


def _cmake_arch(arch_list: str) -> str:
    """TORCH_CUDA_ARCH_LIST form -> CMAKE_CUDA_ARCHITECTURES form ("8.6;9.0a" -> "86;90a")."""
    return ";".join(re.sub(r"\+PTX$", "", item, flags=re.IGNORECASE).replace(".", "")
                    for item in arch_list.split(";"))


def _cuda_blockers() -> List[str]:
    """Why CUDA kernels cannot be built here (empty: they can)."""
    import torch
    from torch.utils import cpp_extension

    blockers = []
    if torch.version.cuda is None:
        blockers.append(f"torch {torch.__version__} has no CUDA")
    if cpp_extension.CUDA_HOME is None:
        blockers.append("torch finds no CUDA toolkit (set CUDA_HOME to the folder with bin/nvcc)")
    return blockers


def _tail(text: str, lines: int = LOG_TAIL_LINES) -> str:
    return "\n".join(text.splitlines()[-lines:])


# Run in a fresh interpreter: loads the placed package under a private name (the tree's
# own import path may need CenterNet's sys.path set-up) and reports what registered.
_PROBE = r"""
import importlib.util, json, sys
from pathlib import Path
package_dir = Path(sys.argv[1])
spec = importlib.util.spec_from_file_location(
    "centernet_patch_built_dcn", package_dir / "__init__.py",
    submodule_search_locations=[str(package_dir)])
module = importlib.util.module_from_spec(spec)
sys.modules[spec.name] = module
spec.loader.exec_module(module)
ops = importlib.import_module(spec.name + ".ops")
print(json.dumps({"cuda": bool(ops.cuda_available()), "op": str(ops.forward_op())}))
"""


def _probe(dcn_dir: Path, log_path: Path) -> bool:
    import json

    command = [sys.executable, "-c", _PROBE, str(dcn_dir)]
    done = subprocess.run(command, capture_output=True, text=True)
    with log_path.open("a", encoding="utf-8") as log:
        log.write("$ python -c <load the built package> " + str(dcn_dir) + "\n"
                  + done.stdout + done.stderr)
    if done.returncode != 0:
        raise BuildError("the DCN extension was built but does not load", command=command,
                         log_tail=_tail(done.stdout + done.stderr), log_path=str(log_path))
    return bool(json.loads(done.stdout.strip().splitlines()[-1])["cuda"])


def build(tree: Union[str, Path], *, cuda: str = "auto", cuda_arch: Optional[str] = None,
          tensorrt_root: Optional[Union[str, Path]] = None,
          sink: ProgressSink = NULL_SINK) -> BuildReport:
    """Builds ``<tree>/src/lib/models/networks/dcn`` in place, then the TensorRT plugin.

    cuda: "auto" (CUDA kernels when torch has CUDA and nvcc is found), "on" (fail
    otherwise) or "off" (CPU kernels only). cuda_arch: compute capabilities for the CUDA
    kernels ("9.0", "8.6;9.0"); default: TORCH_CUDA_ARCH_LIST if set, else the visible
    GPU's. Raises TargetError (not a patched tree), UsageError, MissingDependencyError
    (cuda="on" without CUDA) and BuildError (command, log path and log tail).
    """
    tree = Path(tree)
    if cuda not in CUDA_MODES:
        raise UsageError(f"--cuda is not valid: got: {cuda!r} expected: one of "
                         f"{', '.join(CUDA_MODES)}")
    dcn_dir = tree / DCN_PACKAGE_DIR
    if not (dcn_dir / "setup.py").is_file():
        raise TargetError(f"{tree} is not a patched CenterNet tree: {dcn_dir / 'setup.py'} "
                          f"does not exist", tip=f"run `centernet-patch apply {tree}` first")
    arch_list = normalize_cuda_arch(cuda_arch) if cuda_arch else None

    want_cuda = cuda != "off"
    if want_cuda:
        blockers = _cuda_blockers()
        if blockers and cuda == "on":
            raise MissingDependencyError(
                "cannot build the CUDA kernels: " + "; ".join(blockers),
                tip="install a CUDA build of torch and the CUDA toolkit, or use --cuda off")
        if blockers:
            sink.info("building the CPU kernels only: " + "; ".join(blockers))
            want_cuda = False
    env = dict(os.environ, DCN_EXT_CUDA="on" if want_cuda else "off")
    env.setdefault("MAX_JOBS", str(max(1, os.cpu_count() or 1)))
    if want_cuda:
        if arch_list:
            env["TORCH_CUDA_ARCH_LIST"] = arch_list
        arch_list = env.get("TORCH_CUDA_ARCH_LIST") or None
        if arch_list is None:
            import torch

            if torch.cuda.is_available():
                major, minor = torch.cuda.get_device_capability()
                # 9.0 -> 9.0a: the target with Hopper's wgmma, which the fast kernels use
                # (CUDA 12 or newer; torch's CUDA stands for the toolkit it builds with).
                cuda12 = int((torch.version.cuda or "0").split(".")[0]) >= 12
                arch_list = f"{major}.{minor}" + ("a" if (major, minor) == (9, 0) and cuda12 else "")
                env["TORCH_CUDA_ARCH_LIST"] = arch_list
            else:
                sink.warn("no GPU visible and no --cuda-arch: compiling the CUDA kernels for "
                          "every architecture torch supports (slow)")

    log_dir = dcn_dir / "build"
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / LOG_NAME
    command = [sys.executable, "setup.py", "build_ext", "--inplace"]
    kernels = f"CPU+CUDA, {arch_list}" if want_cuda and arch_list else (
        "CPU+CUDA" if want_cuda else "CPU only")
    start = time.monotonic()
    with sink.step(f"Building the DCN extension ({kernels})"):
        with log_path.open("w", encoding="utf-8") as log:
            log.write("$ cd " + str(dcn_dir) + " && " + " ".join(command) + "\n")
            log.flush()
            try:
                done = subprocess.run(command, cwd=dcn_dir, env=env, stdout=log,
                                      stderr=subprocess.STDOUT)
            except OSError as error:
                raise BuildError(f"the DCN extension build could not start: {error}",
                                 command=command, log_path=str(log_path)) from error
        if done.returncode != 0:
            raise BuildError(
                f"building the DCN extension failed (exit code {done.returncode})",
                command=command, log_path=str(log_path),
                log_tail=_tail(log_path.read_text(encoding="utf-8", errors="replace")),
                tip="see the compiler errors above; --cuda off builds the CPU kernels only")
        has_cuda = _probe(dcn_dir, log_path)
    wall = time.monotonic() - start
    if want_cuda and not has_cuda:
        raise BuildError("the DCN extension was built without its CUDA kernels",
                         command=command, log_path=str(log_path),
                         log_tail=_tail(log_path.read_text(encoding="utf-8", errors="replace")))
    extensions = sorted(dcn_dir.glob("_C*.so")) + sorted(dcn_dir.glob("_C*.pyd"))
    sink.info(f"DCN extension built in {wall:.0f} s ({kernels}): {extensions[0]}")

    plugin_library, plugin_skipped = _build_plugin(tree, tensorrt_root, arch_list, sink)
    return BuildReport(tree=tree, dcn_dir=dcn_dir, extension_path=extensions[0],
                       cuda=has_cuda, cuda_arch=arch_list if has_cuda else None,
                       log_path=log_path, wall_time_s=wall, plugin_library=plugin_library,
                       plugin_skipped=plugin_skipped)


def _build_plugin(tree: Path, tensorrt_root, arch_list: Optional[str], sink: ProgressSink):
    try:
        from patcher.trt_build import build_plugin
    except ImportError:
        sink.warn(PLUGIN_NOT_DELIVERED)
        return None, PLUGIN_NOT_DELIVERED
    try:
        result = build_plugin(tree, tensorrt_root=tensorrt_root,
                              cuda_arch=_cmake_arch(arch_list) if arch_list else None,
                              sink=sink)
    except MissingDependencyError as error:
        sink.warn(str(error))
        return None, str(error)
    return Path(result.library_path), None
