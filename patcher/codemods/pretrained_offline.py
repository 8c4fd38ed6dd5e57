"""Let model construction skip ImageNet-weight downloads when asked to.

Upstream downloads backbone weights while building the model, before any checkpoint is
loaded: ``pose_dla_dcn.get_pose_net`` passes ``pretrained=True`` to ``DLASeg`` (DLA-34
weights from dl.yf.io, a host that is gone), and ``resnet_dcn.PoseResNet.init_weights``
calls ``model_zoo.load_url`` inside an ``if 1:`` block. Exporting a trained checkpoint
needs neither, and must work offline.

After this codemod, setting the environment variable :data:`NO_PRETRAINED_ENV` to ``1``
skips exactly the downloads; without it (training) upstream's behaviour is unchanged:

- DLA: ``pretrained=<download allowed>`` in the ``DLASeg(...)`` call: the backbone is built
  as upstream's own ``pretrained=False`` path builds it. The one difference in the model's
  keys: the unused ImageNet classifier ``base.fc`` that the download adds is absent, so
  :data:`OFFLINE_ABSENT_KEY_PREFIXES` lists the checkpoint keys a loader must expect to
  have no counterpart.
- ResNet: only the download and the statements that use its result (loading it) go under
  ``if <download allowed>:``; the rest of the ``if 1:`` block (the deconv layers'
  BatchNorm initialisation) still runs.
"""
from __future__ import annotations

from typing import List, Optional

import libcst as cst
import libcst.matchers as m
from libcst.codemod.visitors import AddImportsVisitor

from patcher.codemods.base import CenterNetCodemod, Target, dotted_name

NO_PRETRAINED_ENV = "CENTERNET_PATCH_NO_PRETRAINED"
DOWNLOAD_ALLOWED = f"os.environ.get({NO_PRETRAINED_ENV!r}, '') != '1'"
# Keys present in checkpoints trained with the ImageNet download, absent offline.
OFFLINE_ABSENT_KEY_PREFIXES = ("base.fc.",)

DLA_FILE = "src/lib/models/networks/pose_dla_dcn.py"
RESNET_FILE = "src/lib/models/networks/resnet_dcn.py"
_GUARDED_FUNCTIONS = ("init_weights",)  # where the ResNet download happens

_LOAD_URL = m.Call(func=m.Attribute(attr=m.Name("load_url")) | m.Name("load_url"))


def _mentions_switch(node: cst.CSTNode) -> bool:
    return bool(m.findall(node, m.SimpleString(
        value=m.MatchIfTrue(lambda text: NO_PRETRAINED_ENV in text))))


class PretrainedOfflineCommand(CenterNetCodemod):
    NAME = "pretrained_offline"
    DESCRIPTION = (f"Skip the backbones' ImageNet-weight downloads when "
                   f"{NO_PRETRAINED_ENV}=1 (export sets it); training is unchanged.")
    TARGETS = (
        Target(DLA_FILE, "`pretrained=True` passed to `DLASeg(...)` in get_pose_net"),
        Target(RESNET_FILE, "`model_zoo.load_url(...)` assigned to a name in "
                            "PoseResNet.init_weights"),
    )

    def __init__(self, context, target):
        super().__init__(context, target)
        self.functions: List[str] = []
        self.switches = 0  # depth of `if <download allowed>:` blocks around the visitor

    def _switch(self) -> cst.BaseExpression:
        AddImportsVisitor.add_needed_import(self.context, "os")
        return cst.parse_expression(DOWNLOAD_ALLOWED)

    # -- DLA: the pretrained keyword ------------------------------------------------------
    def leave_Call(self, original_node: cst.Call, updated_node: cst.Call) -> cst.Call:
        if self.target.path != DLA_FILE or not dotted_name(original_node.func).endswith(
                "DLASeg"):
            return updated_node
        args = list(updated_node.args)
        for index, arg in enumerate(args):
            if arg.keyword is None or arg.keyword.value != "pretrained":
                continue
            if _mentions_switch(arg.value) or m.matches(arg.value, m.Name("False")):
                self.patched += 1  # already switchable, or never downloads
            elif m.matches(arg.value, m.Name("True")):
                self.legacy += 1
                args[index] = arg.with_changes(value=self._switch())
                return updated_node.with_changes(args=args)
            else:
                self.warn(f"{self.target.path}:{self.line_of(original_node)}: left "
                          f"`pretrained={self.code_of(arg.value)}` alone: not upstream's "
                          f"`True`, cannot tell when it downloads")
            return updated_node
        self.found.append(f"`{self.code_of(original_node)[:60]}...` without pretrained=")
        return updated_node

    # -- ResNet: guard the download and its uses -------------------------------------------
    def visit_FunctionDef(self, node: cst.FunctionDef) -> None:
        self.functions.append(node.name.value)

    def leave_FunctionDef(self, original_node, updated_node):
        self.functions.pop()
        return updated_node

    def visit_If(self, node: cst.If) -> None:
        if _mentions_switch(node.test):
            self.switches += 1
            if self.target.path == RESNET_FILE and self._in_guarded_function() and \
                    m.findall(node.body, _LOAD_URL):
                self.patched += 1

    def leave_If(self, original_node: cst.If, updated_node: cst.If) -> cst.If:
        if _mentions_switch(original_node.test):
            self.switches -= 1
        return updated_node

    def _in_guarded_function(self) -> bool:
        return bool(self.functions) and self.functions[-1] in _GUARDED_FUNCTIONS

    def leave_IndentedBlock(self, original_node: cst.IndentedBlock,
                            updated_node: cst.IndentedBlock) -> cst.IndentedBlock:
        if self.target.path != RESNET_FILE or not self._in_guarded_function() or \
                self.switches:
            return updated_node
        body = list(updated_node.body)
        start = self._download_statement(original_node.body)  # originals carry positions
        if start is None:
            return updated_node
        name = body[start].body[0].targets[0].target.value  # type: ignore[attr-defined]
        end = max(index for index in range(start, len(body))
                  if m.findall(body[index], m.Name(name)))
        self.legacy += 1
        # comments above the download stay above the new `if`
        leading = body[start].leading_lines
        body[start] = body[start].with_changes(leading_lines=())
        guard = cst.If(test=self._switch(), body=cst.IndentedBlock(body=body[start:end + 1]),
                       leading_lines=leading)
        return updated_node.with_changes(body=[*body[:start], guard, *body[end + 1:]])

    def _download_statement(self, body) -> Optional[int]:
        for index, statement in enumerate(body):
            if not isinstance(statement, cst.SimpleStatementLine):
                continue
            if not m.findall(statement, _LOAD_URL):
                continue
            if m.matches(statement, m.SimpleStatementLine(body=[m.Assign(
                    targets=[m.AssignTarget(target=m.Name())], value=_LOAD_URL)])):
                return index
            self.found.append(f"`{self.code_of(statement)}` (line "
                              f"{self.line_of(statement)}), not `NAME = ...load_url(...)`")
        return None
