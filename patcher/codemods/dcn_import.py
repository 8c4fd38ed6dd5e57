"""Import DCN from the ATen-based package placed at networks/dcn instead of legacy DCNv2.

Upstream spells it ``from .DCNv2.dcn_v2 import DCN``; forks import the same class from
other relative depths, as an absolute import of a pip-installed ``dcn_v2``, under an
alias, inside ``try/except`` blocks, or with other indentation. The match is on what is
imported (a module named ``dcn_v2`` or inside a ``DCNv2`` package, and the name ``DCN``),
never on the text; the new import is relative, computed from the file's place in the tree
so that it points at the placed package, and it keeps the name the file uses (``DCN`` or
its alias). Imports this codemod cannot rewrite faithfully (a star import, other names
from DCNv2, ``import DCNv2.dcn_v2 as m``) are refused with the file and line.
"""
from __future__ import annotations

from pathlib import PurePosixPath
from typing import List, Tuple

import libcst as cst

from patcher.codemods.base import CenterNetCodemod, Target, build_dotted, dotted_name

# Where `apply` places the dcn package (dcn_ext) and what the networks import from it.
DCN_PACKAGE_DIR = "src/lib/models/networks/dcn"
REPLACEMENT_MODULE: Tuple[str, ...] = ("modules", "deform_conv")  # inside the package
REPLACEMENT_CLASS = "ModulatedDeformConvPack"
LEGACY_CLASS = "DCN"

# Directories whose files are never rewritten: the legacy package itself, and ours.
_EXCLUDED_DIRS = ("src/lib/models/networks/DCNv2", DCN_PACKAGE_DIR)


def is_legacy_module(module: str) -> bool:
    """True for the legacy extension's module: ``...dcn_v2`` or anything in ``DCNv2``."""
    parts = [part for part in module.split(".") if part]
    return bool(parts) and (parts[-1].lower() in ("dcn_v2", "dcnv2") or "DCNv2" in parts)


def relative_import_to_package(file_path: str) -> Tuple[int, List[str]]:
    """(number of leading dots, module parts) of the import from ``file_path`` to
    the replacement module inside :data:`DCN_PACKAGE_DIR`."""
    file_dir = PurePosixPath(file_path).parent.parts
    package = PurePosixPath(DCN_PACKAGE_DIR).parts
    common = 0
    while common < min(len(file_dir), len(package)) and file_dir[common] == package[common]:
        common += 1
    if common < 2:  # the import would have to climb above src/lib, the top package
        raise ValueError(f"{file_path} is outside src/lib")
    level = len(file_dir) - common + 1
    return level, [*package[common:], *REPLACEMENT_MODULE]


class DcnImportCommand(CenterNetCodemod):
    NAME = "dcn_import"
    DESCRIPTION = ("Import DCN from the ATen-based package placed at networks/dcn "
                   "(ModulatedDeformConvPack) instead of the legacy DCNv2 extension.")
    TARGETS = (
        Target("src/lib/models/networks/pose_dla_dcn.py",
               "an import of DCN from the legacy DCNv2 extension "
               "(`from .DCNv2.dcn_v2 import DCN`)"),
        Target("src/lib/models/networks/resnet_dcn.py",
               "an import of DCN from the legacy DCNv2 extension "
               "(`from .DCNv2.dcn_v2 import DCN`)"),
    )

    @classmethod
    def extra_targets(cls, tree) -> List[Target]:
        """Other modules under src/lib that import the legacy extension (forks do)."""
        declared = {target.path for target in cls.TARGETS}
        found = []
        for path in sorted((tree / "src" / "lib").rglob("*.py")):
            relative = path.relative_to(tree).as_posix()
            if relative in declared or any(
                    relative.startswith(excluded + "/") for excluded in _EXCLUDED_DIRS):
                continue
            text = path.read_text(encoding="utf-8", errors="replace")
            if "dcn_v2" in text.lower() or "DCNv2" in text:
                found.append(Target(relative, "an import of DCN from DCNv2", required=False))
        return found

    def _new_module(self, node: cst.CSTNode) -> Tuple[List[cst.Dot], cst.BaseExpression]:
        try:
            level, parts = relative_import_to_package(self.target.path)
        except ValueError as error:
            raise self.refuse(node, f"{error}: no relative import reaches "
                                    f"{DCN_PACKAGE_DIR}") from None
        return [cst.Dot() for _ in range(level)], build_dotted(parts)

    def leave_Import(self, original_node: cst.Import, updated_node: cst.Import) -> cst.Import:
        for alias in original_node.names:
            if is_legacy_module(dotted_name(alias.name)):
                raise self.refuse(
                    original_node, "it imports the legacy module itself, so its uses "
                    "(`module.DCN`) would need rewriting too",
                    tip=f"change it to `from <...>.dcn_v2 import {LEGACY_CLASS}` and re-run")
        return updated_node

    def leave_ImportFrom(self, original_node: cst.ImportFrom,
                         updated_node: cst.ImportFrom) -> cst.ImportFrom:
        module = dotted_name(original_node.module) if original_node.module else ""
        if module.split(".")[-len(REPLACEMENT_MODULE):] == list(REPLACEMENT_MODULE) and \
                not isinstance(original_node.names, cst.ImportStar) and any(
                    dotted_name(alias.name) == REPLACEMENT_CLASS
                    for alias in original_node.names):
            self.patched += 1
            return updated_node
        if not is_legacy_module(module):
            if "dcn" in module.lower() or (
                    not isinstance(original_node.names, cst.ImportStar)
                    and any("DCN" in dotted_name(a.name) for a in original_node.names)):
                self.found.append(f"`{self.code_of(original_node)}` (line "
                                  f"{self.line_of(original_node)})")
            return updated_node

        if isinstance(original_node.names, cst.ImportStar):
            raise self.refuse(original_node, "a star import of the legacy module; which "
                                             "names it needs is unknown",
                              tip=f"import {LEGACY_CLASS} by name and re-run")
        others = [dotted_name(a.name) for a in original_node.names
                  if dotted_name(a.name) != LEGACY_CLASS]
        if others:
            raise self.refuse(original_node, f"it also imports {', '.join(others)}, which "
                                             f"the replacement package does not provide")
        if len(original_node.names) != 1:
            raise self.refuse(original_node, f"{LEGACY_CLASS} is imported twice")
        alias = original_node.names[0]
        local_name = alias.asname.name.value if alias.asname else LEGACY_CLASS  # type: ignore[union-attr]
        relative, new_module = self._new_module(original_node)
        self.legacy += 1
        return updated_node.with_changes(
            relative=relative, module=new_module,
            names=[cst.ImportAlias(name=cst.Name(REPLACEMENT_CLASS),
                                   asname=cst.AsName(name=cst.Name(local_name)))],
            lpar=None, rpar=None)


def replacement_import_for(file_path: str, local_name: str = LEGACY_CLASS) -> str:
    """The import line this codemod writes into ``file_path`` (for docs and tests)."""
    level, parts = relative_import_to_package(file_path)
    return (f"from {'.' * level}{'.'.join(parts)} import {REPLACEMENT_CLASS} as "
            f"{local_name}")


__all__ = ["DcnImportCommand", "DCN_PACKAGE_DIR", "REPLACEMENT_CLASS", "REPLACEMENT_MODULE",
           "relative_import_to_package", "replacement_import_for", "is_legacy_module"]
