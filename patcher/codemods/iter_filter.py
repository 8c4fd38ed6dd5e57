"""The 2019 recipe's edit of torch's ``_iter_filter``, only where that torch needs it.

On torch 1.x, exporting a DCN whose autograd Function takes int arguments (stride,
padding, ...) failed with "Auto nesting doesn't know how to process an input object of
type int" from ``torch/autograd/function.py``'s ``_iter_filter``; the recipe added a branch
turning ints into tensors:

    if condition(obj):
        yield obj
    elif isinstance(obj, int):      # added
        yield torch.tensor(obj)     # added
    elif obj is None:
        ...

torch 2.x never reaches that path during export (int arguments reach ``symbolic`` as
Python ints; ``_iter_filter`` only serves ``NestedIOFunction``), so on torch >= 2 this
codemod skips with "not needed" and changes nothing. It edits an installed torch only when
the user names the file (``apply --patch-torch PATH``); the engine keeps a backup and
``--revert`` restores it.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Optional, Tuple

import libcst as cst
import libcst.matchers as m
from libcst.codemod import SkipFile

from patcher.codemods.base import CenterNetCodemod, Target
from patcher.errors import PatchError

FIRST_VERSION_NOT_NEEDING_IT = (2, 0)
NOT_NEEDED_REASON = ("int arguments reach `symbolic` as Python ints on torch 2.x; "
                     "_iter_filter only serves NestedIOFunction")

_VERSION = re.compile(r"""^__version__\s*(?::\s*str\s*)?=\s*['"]([^'"]+)['"]""", re.M)


def resolve_function_py(path: Path) -> Path:
    """``path`` itself, or ``path/autograd/function.py`` when given torch's package dir."""
    path = Path(path).expanduser().absolute()
    if path.is_dir():
        path = path / "autograd" / "function.py"
    if not path.is_file():
        raise PatchError(f"--patch-torch {path}: no such file; expected torch's "
                         f"autograd/function.py or the torch package directory",
                         tip="find it with `python -c \"import torch.autograd.function as f; "
                             "print(f.__file__)\"`")
    return path


def torch_version_of(function_py: Path) -> str:
    """The version of the torch that ``function_py`` belongs to (from torch/version.py)."""
    version_py = Path(function_py).parent.parent / "version.py"
    text = version_py.read_text(encoding="utf-8") if version_py.is_file() else ""
    found = _VERSION.search(text)
    if not found:
        raise PatchError(f"cannot tell which torch {function_py} belongs to: no __version__ "
                         f"in {version_py}; refusing to edit an unknown torch",
                         tip="pass the autograd/function.py of an installed torch")
    return found.group(1)


def _major_minor(version: str) -> Tuple[int, int]:
    numbers = re.findall(r"\d+", version)[:2]
    return (int(numbers[0]), int(numbers[1]) if len(numbers) > 1 else 0)


def needs_patch(version: str) -> bool:
    return _major_minor(version) < FIRST_VERSION_NOT_NEEDING_IT


class IterFilterCommand(CenterNetCodemod):
    NAME = "iter_filter"
    DESCRIPTION = ("Let torch 1.x's _iter_filter turn int arguments into tensors (the "
                   "recipe's edit); not needed on torch 2.x.")
    TARGETS = (
        Target("torch/autograd/function.py",
               "`if condition(obj): yield obj` in _iter_filter's inner _iter"),
    )

    def transform_module_impl(self, tree: cst.Module) -> cst.Module:
        version = torch_version_of(Path(self.target.path))
        if not needs_patch(version):
            raise SkipFile(f"not needed on torch {version}: {NOT_NEEDED_REASON}")
        self.functions = []
        return super().transform_module_impl(tree)

    def visit_FunctionDef(self, node: cst.FunctionDef) -> None:
        self.functions.append(node)

    def leave_FunctionDef(self, original_node, updated_node):
        self.functions.pop()
        return updated_node

    def _object_name(self) -> Optional[str]:
        """The inner ``_iter(obj)``'s parameter when visiting inside _iter_filter."""
        names = [f.name.value for f in self.functions]
        if names[-2:] != ["_iter_filter", "_iter"]:
            return None
        params = self.functions[-1].params.params
        return params[0].name.value if params else None

    def leave_If(self, original_node: cst.If, updated_node: cst.If) -> cst.If:
        obj = self._object_name()
        if obj is None or not m.matches(
                original_node.test, m.Call(func=m.Name("condition"), args=[m.Arg(m.Name(obj))])):
            return updated_node
        branch = original_node.orelse
        while isinstance(branch, cst.If):
            if m.matches(branch.test, m.Call(func=m.Name("isinstance"),
                                             args=[m.Arg(m.Name(obj)), m.Arg(m.Name("int"))])):
                self.patched += 1
                return updated_node
            branch = branch.orelse
        self.legacy += 1
        int_branch = cst.parse_statement(
            f"if isinstance({obj}, int):\n    yield torch.tensor({obj})\n",
            config=self.module.config_for_parsing)
        assert isinstance(int_branch, cst.If)
        return updated_node.with_changes(orelse=int_branch.with_changes(
            orelse=updated_node.orelse))
