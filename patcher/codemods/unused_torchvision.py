"""Drop model.py's unused torchvision import.

Upstream's model.py starts with ``import torchvision.models as models`` and never uses
``models``; without torchvision installed (it is not needed for CenterNet's DCN models)
the import alone makes ``create_model`` unusable. Every module-level import of
torchvision whose names are unused is removed; one whose names are used is left alone with
a warning. A model.py without torchvision imports is the patched state.
"""
from __future__ import annotations

from typing import List, Union

import libcst as cst
from libcst.codemod.visitors import RemoveImportsVisitor
from libcst.metadata import ScopeProvider

from patcher.codemods.base import CenterNetCodemod, Target, dotted_name

PACKAGE = "torchvision"


def _is_torchvision(module: str) -> bool:
    return module == PACKAGE or module.startswith(PACKAGE + ".")


class UnusedTorchvisionCommand(CenterNetCodemod):
    NAME = "unused_torchvision"
    DESCRIPTION = "Remove model.py's unused `import torchvision.models as models`."
    TARGETS = (
        Target("src/lib/models/model.py",
               "module-level torchvision imports (none left is the patched state)"),
    )
    METADATA_DEPENDENCIES = (*CenterNetCodemod.METADATA_DEPENDENCIES, ScopeProvider)

    def visit_Module(self, node: cst.Module) -> None:
        self.module_body = {id(statement): index for index, statement in enumerate(node.body)}
        self.drop: List[int] = []  # module-level statements removed as a whole

    def _bindings(self, node: Union[cst.Import, cst.ImportFrom]) -> List[tuple]:
        """(module to remove, imported object or None, asname or None, bound name)."""
        bindings = []
        if isinstance(node, cst.Import):
            for alias in node.names:
                module = dotted_name(alias.name)
                if _is_torchvision(module):
                    asname = alias.asname.name.value if alias.asname else None
                    bindings.append((module, None, asname, asname or module.split(".")[0]))
        elif node.module is not None and not node.relative and not isinstance(
                node.names, cst.ImportStar):
            module = dotted_name(node.module)
            if _is_torchvision(module):
                for alias in node.names:
                    name = dotted_name(alias.name)
                    asname = alias.asname.name.value if alias.asname else None
                    bindings.append((module, name, asname, asname or name))
        return bindings

    def _used(self, statement: cst.CSTNode, name: str) -> bool:
        scope = self.get_metadata(ScopeProvider, statement, None)
        if scope is None:
            return True  # unknown: be conservative
        return any(assignment.references for assignment in scope.assignments[name])

    def visit_SimpleStatementLine(self, node: cst.SimpleStatementLine) -> None:
        for small in node.body:
            if not isinstance(small, (cst.Import, cst.ImportFrom)):
                continue
            if isinstance(small, cst.ImportFrom) and isinstance(small.names, cst.ImportStar) \
                    and small.module is not None and _is_torchvision(dotted_name(small.module)):
                self.warn(f"{self.target.path}:{self.line_of(node)}: left "
                          f"`{self.code_of(small)}` alone: a star import's uses cannot be "
                          f"checked")
                continue
            bindings = self._bindings(small)
            if bindings and len(node.body) == 1 and id(node) in self.module_body and all(
                    not self._used(small, bound) for *_, bound in bindings):
                # the whole line goes; leave_Module keeps the blank lines around it
                self.legacy += 1
                self.drop.append(self.module_body[id(node)])
                continue
            for module, obj, asname, bound in bindings:
                where = f"{self.target.path}:{self.line_of(node)}"
                if id(node) not in self.module_body:
                    self.warn(f"{where}: left `{self.code_of(small)}` alone: it is inside a "
                              f"block (probably guarded already)")
                elif self._used(small, bound):
                    self.warn(f"{where}: left `{self.code_of(small)}` alone: `{bound}` is "
                              f"used in this module, so torchvision stays a dependency")
                else:
                    self.legacy += 1
                    RemoveImportsVisitor.remove_unused_import(self.context, module, obj,
                                                              asname)
        return None

    def leave_Module(self, original_node: cst.Module, updated_node: cst.Module) -> cst.Module:
        if self.legacy == 0 and not self.context.warnings:
            self.patched += 1  # no torchvision import at all: the patched state
        if not self.drop:
            return updated_node
        body, carried = [], []
        for index, statement in enumerate(updated_node.body):
            if index in self.drop:
                carried += list(statement.leading_lines)
                continue
            if carried:
                statement = statement.with_changes(
                    leading_lines=[*carried, *statement.leading_lines])
                carried = []
            body.append(statement)
        return updated_node.with_changes(body=body)

