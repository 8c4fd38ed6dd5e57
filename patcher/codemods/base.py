"""What every codemod shares: declared targets, three outcomes, drift detection.

A codemod is a LibCST ``VisitorBasedCodemodCommand`` with a ``NAME``, a ``DESCRIPTION`` and
a ``TARGETS`` table (which file, which construct). While it visits a file it counts what it
saw: ``legacy`` targets (rewritten), ``patched`` ones (already in the new form), and a list
of ``found`` candidates that looked close but did not match. :func:`run_codemod` turns that
into one of the outcomes:

- ``changed``: the file's new text differs;
- ``applied``: the target is already in its patched form, nothing to do;
- ``warned``: the target was seen but deliberately left alone (the reason is a warning);
- ``skipped``: the codemod does not apply to this file (e.g. a torch that does not need it).

A required target that was neither legacy nor patched is drift: :class:`DriftError`
naming the file, the target and what was found instead. Nothing is written by a codemod;
the engine (patcher/apply.py) writes the files once every codemod has run.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar, List, Optional, Sequence, Tuple

import libcst as cst
from libcst.codemod import CodemodContext, SkipFile, VisitorBasedCodemodCommand
from libcst.metadata import PositionProvider

from patcher.errors import DriftError, PatchError, SourceParseError

CHANGED = "changed"
APPLIED = "applied"
WARNED = "warned"
SKIPPED = "skipped"


@dataclass(frozen=True)
class Target:
    """A file a codemod expects to find and the construct it rewrites there."""

    path: str  # posix path relative to the CenterNet tree's root
    construct: str  # the construct, in words (used in drift messages)
    required: bool = True  # False: rewrite it when present, no drift when absent


@dataclass
class CodemodResult:
    codemod: str
    path: str
    outcome: str  # CHANGED | APPLIED | WARNED | SKIPPED
    old_source: str
    new_source: str
    messages: List[str] = field(default_factory=list)  # warnings, skip reasons


class CenterNetCodemod(VisitorBasedCodemodCommand):
    """Base class: subclasses set NAME, DESCRIPTION, TARGETS and count what they see."""

    NAME: ClassVar[str] = ""
    DESCRIPTION: ClassVar[str] = ""
    TARGETS: ClassVar[Tuple[Target, ...]] = ()
    METADATA_DEPENDENCIES = (PositionProvider,)

    def __init__(self, context: CodemodContext, target: Target) -> None:
        super().__init__(context)
        self.target = target
        self.legacy = 0  # targets found in upstream's form (rewritten)
        self.patched = 0  # targets found already in the patched form
        self.found: List[str] = []  # near misses, for the drift message

    # -- helpers for subclasses ---------------------------------------------------------
    def line_of(self, node: cst.CSTNode) -> int:
        return self.get_metadata(PositionProvider, node).start.line

    def code_of(self, node: cst.CSTNode) -> str:
        return self.module.code_for_node(node).strip()

    def refuse(self, node: cst.CSTNode, why: str, tip: Optional[str] = None) -> PatchError:
        """An error for a construct this codemod recognises but cannot rewrite safely."""
        return PatchError(
            f"{self.target.path}:{self.line_of(node)}: {self.NAME}: cannot rewrite "
            f"`{self.code_of(node)}`: {why}; nothing was written", tip=tip)

    def not_found_detail(self) -> str:
        """What was found instead of the target (the end of the drift message)."""
        if not self.found:
            return "nothing similar"
        shown = self.found[:8]
        more = f" (+{len(self.found) - len(shown)} more)" if len(self.found) > len(shown) else ""
        return "; ".join(shown) + more


def parse_module(path: str, source: str) -> cst.Module:
    try:
        return cst.parse_module(source)
    except cst.ParserSyntaxError as error:
        raise SourceParseError(
            f"{path} does not parse: {error.message} (line {error.raw_line}, column "
            f"{error.raw_column}); nothing was written",
            tip="fix the file or restore it with `git checkout -- FILE`") from None


def run_codemod(codemod_class: type, target: Target, source: str) -> CodemodResult:
    """Run one codemod on one file's text; raises DriftError/PatchError, never writes."""
    module = parse_module(target.path, source)
    context = CodemodContext(filename=target.path)
    codemod = codemod_class(context, target)
    try:
        new_module = codemod.transform_module(module)
    except SkipFile as skip:
        return CodemodResult(codemod_class.NAME, target.path, SKIPPED, source, source,
                             [str(skip)] if str(skip) else [])
    warnings = list(codemod.context.warnings)
    if codemod.legacy == 0 and codemod.patched == 0 and not warnings and target.required:
        raise DriftError(
            f"{target.path}: {codemod_class.NAME}: expected {target.construct}; found "
            f"{codemod.not_found_detail()}; nothing was written",
            tip="the target tree differs from the CenterNet commit these codemods know; "
                "check `centernet-patch status TARGET` and the upstream commit")
    new_source = new_module.code
    if new_source != source:
        outcome = CHANGED
    elif warnings:
        outcome = WARNED
    elif codemod.legacy == 0 and codemod.patched == 0:
        outcome = SKIPPED  # optional target not present in this file
    else:
        outcome = APPLIED
    return CodemodResult(codemod_class.NAME, target.path, outcome, source, new_source,
                         warnings)


def dotted_name(node: Optional[cst.BaseExpression]) -> str:
    """``a.b.c`` for an Attribute/Name chain, '' for anything else."""
    if node is None:
        return ""
    if isinstance(node, cst.Name):
        return node.value
    if isinstance(node, cst.Attribute):
        head = dotted_name(node.value)
        return f"{head}.{node.attr.value}" if head else ""
    return ""


def build_dotted(parts: Sequence[str]) -> cst.BaseExpression:
    """The Attribute chain for ``parts`` (``["a", "b"]`` -> ``a.b``)."""
    node: cst.BaseExpression = cst.Name(parts[0])
    for part in parts[1:]:
        node = cst.Attribute(value=node, attr=cst.Name(part))
    return node
