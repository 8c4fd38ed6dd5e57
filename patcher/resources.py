"""Where the tool's own files are: the source tree that ships ``patches/``, ``dcn_ext/``
and ``trt_plugin/`` next to the ``patcher`` package (a source checkout or an editable
install, which is how the README installs it)."""
from __future__ import annotations

from pathlib import Path

from patcher.errors import MissingDependencyError

PACKAGE_ROOT = Path(__file__).resolve().parent
SOURCE_ROOT = PACKAGE_ROOT.parent  # the centernet-patch checkout


def source_dir(name: str) -> Path:
    """``SOURCE_ROOT/name``, or a MissingDependencyError naming what is absent."""
    path = SOURCE_ROOT / name
    if not path.is_dir():
        raise MissingDependencyError(
            f"{name}/ is not next to the patcher package (looked in {path})",
            tip="install centernet-patch from a source checkout: `pip install -e .`")
    return path


def vendor_dir() -> Path:
    """Git-ignored third-party material a developer places by hand (e.g. TensorRT headers)."""
    return SOURCE_ROOT / ".vendor"
