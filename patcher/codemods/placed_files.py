"""Files that ``apply`` places into the target tree (not rewrites: whole files we own).

- ``dcn_package``: the ATen-based DCN package, the files of this project's ``dcn_ext``
  (Python modules, C++/CUDA sources, setup.py, contract.json), placed at
  ``src/lib/models/networks/dcn`` where the rewritten imports point;
- ``export_scripts``: every file under this project's ``patches/`` directory, placed at the
  same relative path in the target (``patches/src/export_onnx_ddd.py`` ->
  ``src/export_onnx_ddd.py``). A missing or empty ``patches/`` places nothing.

Build outputs and caches are never placed; the same patterns tell ``--revert`` which
leftovers inside a placed directory it may delete (a build of the dcn package in place).
"""
from __future__ import annotations

import fnmatch
import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, Tuple

from patcher.codemods.dcn_import import DCN_PACKAGE_DIR
from patcher.errors import PatchError

# Never copied; removed from placed directories by --revert (they come from builds/runs).
BUILD_OUTPUT_PATTERNS: Tuple[str, ...] = (
    "__pycache__", "*.pyc", "build", "dist", "*.so", "*.pyd", "*.o", "*.egg-info",
    ".pytest_cache", ".ninja_deps", ".ninja_log", "*.ninja",
)


def is_build_output(relative: Path) -> bool:
    return any(fnmatch.fnmatch(part, pattern)
               for part in relative.parts for pattern in BUILD_OUTPUT_PATTERNS)


def _project_root() -> Path:
    return Path(__file__).resolve().parents[2]


def dcn_source_dir() -> Path:
    """This project's dcn_ext directory (found without importing it)."""
    spec = importlib.util.find_spec("dcn_ext")
    if spec is not None and spec.submodule_search_locations:
        return Path(list(spec.submodule_search_locations)[0])
    return _project_root() / "dcn_ext"


def patches_source_dir() -> Path:
    return _project_root() / "patches"


@dataclass(frozen=True)
class PlacedFiles:
    NAME: str
    DESCRIPTION: str
    source: Callable[[], Path]  # where the files come from
    destination: str  # posix directory relative to the tree root ('' = the root)
    required: bool  # an absent source is an error (True) or places nothing (False)

    def files(self) -> Dict[str, bytes]:
        """Destination path (posix, relative to the tree) -> content, sorted."""
        source = self.source()
        if not source.is_dir():
            if self.required:
                raise PatchError(f"{self.NAME}: its source directory {source} is missing; "
                                 f"the centernet-patch installation is incomplete",
                                 tip="reinstall centernet-patch")
            return {}
        placed: Dict[str, bytes] = {}
        for path in sorted(source.rglob("*")):
            relative = path.relative_to(source)
            if not path.is_file() or is_build_output(relative) or any(
                    part.startswith(".") for part in relative.parts):
                continue
            destination = Path(self.destination) / relative if self.destination else relative
            placed[destination.as_posix()] = path.read_bytes()
        return placed


DCN_PACKAGE = PlacedFiles(
    "dcn_package",
    f"The ATen-based DCN package (this project's dcn_ext) at {DCN_PACKAGE_DIR}.",
    dcn_source_dir, DCN_PACKAGE_DIR, required=True)

EXPORT_SCRIPTS = PlacedFiles(
    "export_scripts",
    "The export scripts (this project's patches/), at the same paths in the tree.",
    patches_source_dir, "", required=False)

PLACED = (DCN_PACKAGE, EXPORT_SCRIPTS)
