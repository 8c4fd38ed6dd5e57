"""iter_filter: the recipe's edit on a torch 1.x, "not needed" on torch 2.x."""
from __future__ import annotations

from pathlib import Path

import pytest

from codemod_helpers import code
from patcher.codemods.base import APPLIED, CHANGED, SKIPPED, Target, run_codemod
from patcher.codemods.iter_filter import (IterFilterCommand, needs_patch, resolve_function_py,
                                          torch_version_of)
from patcher.errors import DriftError, PatchError

# Written for these tests in the shape of torch 1.0's _iter_filter.
LEGACY_FUNCTION_PY = """
    import torch


    def _iter_filter(condition, allow_unknown=False, condition_msg=None,
                     conversion=None):
        def _iter(obj):
            if conversion is not None:
                obj = conversion(obj)
            if condition(obj):
                yield obj
            elif obj is None:
                return
            elif isinstance(obj, (list, tuple)):
                for o in obj:
                    for var in _iter(o):
                        yield var
            else:
                raise ValueError("Auto nesting doesn't know how to process an input "
                                 "object of type " + torch.typename(obj))
        return _iter
    """


def fake_torch(root: Path, version: str, function_py: str = LEGACY_FUNCTION_PY) -> Path:
    (root / "torch" / "autograd").mkdir(parents=True)
    (root / "torch" / "version.py").write_text(f"__version__ = '{version}'\n")
    path = root / "torch" / "autograd" / "function.py"
    path.write_text(code(function_py))
    return path


def _run(path: Path):
    return run_codemod(IterFilterCommand, Target(str(path), "x"), path.read_text())


def test_torch_1_gets_the_int_branch_once(tmp_path):
    path = fake_torch(tmp_path, "1.0.1")
    result = _run(path)
    assert result.outcome == CHANGED
    assert result.new_source == code(LEGACY_FUNCTION_PY).replace(
        "            yield obj\n",
        "            yield obj\n"
        "        elif isinstance(obj, int):\n"
        "            yield torch.tensor(obj)\n")
    path.write_text(result.new_source)
    assert _run(path).outcome == APPLIED


def test_patched_iter_turns_ints_into_tensors(tmp_path):
    torch = pytest.importorskip("torch")
    path = fake_torch(tmp_path, "1.1.0")
    namespace: dict = {}
    exec(_run(path).new_source, namespace)
    flatten = namespace["_iter_filter"](lambda x: isinstance(x, torch.Tensor))
    values = list(flatten([torch.ones(1), 3, None]))
    assert len(values) == 2 and values[1].item() == 3


def test_torch_2_is_not_patched(tmp_path):
    path = fake_torch(tmp_path, "2.13.0+cpu")
    result = _run(path)
    assert result.outcome == SKIPPED and result.new_source == result.old_source
    assert result.messages[0].startswith("not needed on torch 2.13.0+cpu")


def test_the_installed_torch_is_read_not_written():
    torch = pytest.importorskip("torch")
    path = resolve_function_py(Path(torch.__file__).parent)
    assert path.name == "function.py" and path.parent.name == "autograd"
    before = path.read_bytes()
    result = _run(path)
    assert needs_patch(torch_version_of(path)) is False
    assert result.outcome == SKIPPED and path.read_bytes() == before


def test_unknown_torch_version_is_refused(tmp_path):
    path = fake_torch(tmp_path, "1.0.0")
    (tmp_path / "torch" / "version.py").write_text("# no version here\n")
    with pytest.raises(PatchError, match="cannot tell which torch .* belongs to"):
        _run(path)
    with pytest.raises(PatchError, match="no such file"):
        resolve_function_py(tmp_path / "nowhere")


def test_drift_when_iter_filter_changed_shape(tmp_path):
    path = fake_torch(tmp_path, "1.0.0", "def _iter_filter(condition):\n    return condition\n")
    with pytest.raises(DriftError, match="function.py: iter_filter: expected x; found nothing similar"):
        _run(path)


def test_versions():
    assert needs_patch("1.0.1") and needs_patch("1.13.1+cu117")
    assert not needs_patch("2.0.0") and not needs_patch("2.13.0+cpu")
