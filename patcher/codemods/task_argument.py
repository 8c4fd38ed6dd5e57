"""Make opts.py's ``task`` optional while keeping upstream's positional form.

Upstream declares ``add_argument('task', default='ctdet', ...)``: a required positional,
so ``opts().init()`` without a task exits. The 2019 recipe turned it into ``--task``,
which breaks upstream's own ``python main.py ctdet ...``. This codemod keeps both:

    add_argument('task', nargs='?', default=argparse.SUPPRESS, help=...)   # ctdet ...
    add_argument('--task', dest='task', default='ctdet', help=...)          # --task ddd

Both write ``opt.task``. The positional's default is ``argparse.SUPPRESS`` so that an
absent positional never overwrites a ``--task`` given earlier on the command line; the
option carries the default, so no task at all gives ``ctdet``. If both forms are given,
the later one on the command line wins (argparse's ordinary rule for one destination).
The default is upstream's when it names a task; an empty one (``default=''``, seen in
forks) becomes ``'ctdet'``. A tree already converted to ``--task`` only (the recipe) gets
the positional back.
"""
from __future__ import annotations

from typing import List, Optional

import libcst as cst
import libcst.matchers as m
from libcst.codemod.visitors import AddImportsVisitor

from patcher.codemods.base import CenterNetCodemod, Target

DEFAULT_TASK = "ctdet"
OPTION_HELP = "same as the positional task"

_ADD_ARGUMENT = m.Call(func=m.Attribute(attr=m.Name("add_argument")))


def _string_value(node: cst.BaseExpression) -> Optional[str]:
    if isinstance(node, cst.SimpleString):
        return node.evaluated_value if isinstance(node.evaluated_value, str) else None
    return None


def _keyword(call: cst.Call, name: str) -> Optional[cst.Arg]:
    for arg in call.args:
        if arg.keyword is not None and arg.keyword.value == name:
            return arg
    return None


def _flags(call: cst.Call) -> List[str]:
    """The leading string arguments of an add_argument call ('task', '--task', '-t')."""
    flags = []
    for arg in call.args:
        if arg.keyword is not None or arg.star:
            break
        value = _string_value(arg.value)
        if value is None:
            break
        flags.append(value)
    return flags


def _kind(call: cst.Call) -> Optional[str]:
    """'positional' or 'option' when the call declares the task, else None."""
    flags = _flags(call)
    dest = _keyword(call, "dest")
    dest_value = _string_value(dest.value) if dest else None
    if flags == ["task"]:
        return "positional"
    if flags and all(flag.startswith("-") for flag in flags):
        implicit = next((f.lstrip("-") for f in flags if f.startswith("--")), None)
        if (dest_value or implicit) == "task":
            return "option"
    return None


class TaskArgumentCommand(CenterNetCodemod):
    NAME = "task_argument"
    DESCRIPTION = ("Accept the task as upstream's positional (`main.py ctdet`), as "
                   "`--task ddd`, or not at all (default ctdet).")
    TARGETS = (
        Target("src/lib/opts.py",
               "the `task` argument of the option parser "
               "(`parser.add_argument('task', default='ctdet', ...)`)"),
    )

    def __init__(self, context, target):
        super().__init__(context, target)
        self.positional: List[cst.SimpleStatementLine] = []
        self.options: List[cst.SimpleStatementLine] = []

    def visit_Module(self, node: cst.Module) -> None:
        # First pass: find every declaration of the task, so that the rewrite knows
        # whether the positional, the option or both exist.
        for statement in m.findall(node, m.SimpleStatementLine(body=[m.Expr(_ADD_ARGUMENT)])):
            call = statement.body[0].value  # type: ignore[attr-defined]
            kind = _kind(call)
            if kind == "positional":
                self.positional.append(statement)
            elif kind == "option":
                self.options.append(statement)
            elif len(self.found) < 12 and _flags(call):
                self.found.append(repr(_flags(call)[0]))
        if self.found:
            self.found = [f"add_argument calls for {', '.join(self.found)}"]
        for duplicates in (self.positional, self.options):
            if len(duplicates) > 1:
                raise self.refuse(duplicates[1], "the task is declared more than once "
                                                 "(line " f"{self.line_of(duplicates[0])})")

    def _is_patched_positional(self, call: cst.Call) -> bool:
        nargs = _keyword(call, "nargs")
        default = _keyword(call, "default")
        return (nargs is not None and _string_value(nargs.value) == "?" and default is not None
                and m.matches(default.value, m.Attribute(attr=m.Name("SUPPRESS"))))

    def _option_default(self, call: cst.Call) -> cst.BaseExpression:
        default = _keyword(call, "default")
        if default is None or _string_value(default.value) == "":
            return cst.SimpleString(repr(DEFAULT_TASK))
        return default.value

    def leave_SimpleStatementLine(self, original_node, updated_node):
        if original_node in self.positional:
            call: cst.Call = original_node.body[0].value
            if self._is_patched_positional(call) and self.options:
                self.patched += 1
                return updated_node
            self.legacy += 1
            AddImportsVisitor.add_needed_import(self.context, "argparse")
            receiver = self.code_of(call.func.value)  # type: ignore[attr-defined]
            new_positional = updated_node.with_changes(
                body=[updated_node.body[0].with_changes(value=self._optional(call))])
            if self.options:
                return new_positional
            # continuation lines aligned under the first argument, like upstream's (libcst
            # adds the block's indentation to them)
            align = " " * (len(receiver) + len(".add_argument("))
            option = cst.parse_statement(
                f"{receiver}.add_argument('--task', dest='task', "
                f"default={self.module.code_for_node(self._option_default(call))},\n{align}"
                f"help={OPTION_HELP!r})", config=self.module.config_for_parsing)
            return cst.FlattenSentinel([new_positional, option])
        if original_node in self.options and not self.positional:
            # the recipe's `--task` only: give the positional back, keep the option
            self.legacy += 1
            AddImportsVisitor.add_needed_import(self.context, "argparse")
            call = original_node.body[0].value
            receiver = self.code_of(call.func.value)
            positional = cst.parse_statement(
                f"{receiver}.add_argument('task', nargs='?', default=argparse.SUPPRESS, "
                f"help='ctdet | ddd | multi_pose | exdet')",
                config=self.module.config_for_parsing)
            option_call = call
            default = _keyword(call, "default")
            if default is None or _string_value(default.value) == "":
                option_call = self._with_keyword(call, "default",
                                                 cst.SimpleString(repr(DEFAULT_TASK)))
            option = updated_node.with_changes(
                body=[updated_node.body[0].with_changes(value=option_call)])
            return cst.FlattenSentinel([positional, option])
        if original_node in self.options:
            default = _keyword(original_node.body[0].value, "default")
            if default is None or _string_value(default.value) == "":
                self.legacy += 1
                return updated_node.with_changes(body=[updated_node.body[0].with_changes(
                    value=self._with_keyword(original_node.body[0].value, "default",
                                             cst.SimpleString(repr(DEFAULT_TASK))))])
        return updated_node

    @staticmethod
    def _with_keyword(call: cst.Call, name: str, value: cst.BaseExpression) -> cst.Call:
        """``call`` with keyword ``name`` set to ``value`` (replaced or appended)."""
        args = list(call.args)
        for index, arg in enumerate(args):
            if arg.keyword is not None and arg.keyword.value == name:
                args[index] = arg.with_changes(value=value)
                return call.with_changes(args=args)
        if args and args[-1].comma is cst.MaybeSentinel.DEFAULT:
            args[-1] = args[-1].with_changes(comma=cst.Comma(whitespace_after=cst.SimpleWhitespace(" ")))
        args.append(cst.Arg(keyword=cst.Name(name), value=value,
                            equal=cst.AssignEqual(cst.SimpleWhitespace(""),
                                                  cst.SimpleWhitespace(""))))
        return call.with_changes(args=args)

    def _optional(self, call: cst.Call) -> cst.Call:
        """The positional with nargs='?' and default=argparse.SUPPRESS."""
        suppress = cst.Attribute(value=cst.Name("argparse"), attr=cst.Name("SUPPRESS"))
        args = list(call.args)
        no_space = cst.AssignEqual(cst.SimpleWhitespace(""), cst.SimpleWhitespace(""))
        if _keyword(call, "nargs") is None:
            args.insert(1, cst.Arg(keyword=cst.Name("nargs"), value=cst.SimpleString("'?'"),
                                   equal=no_space,
                                   comma=cst.Comma(whitespace_after=cst.SimpleWhitespace(" "))))
            if len(args) == 2:  # `add_argument('task')`: the new argument is the last
                args[0] = args[0].with_changes(
                    comma=cst.Comma(whitespace_after=cst.SimpleWhitespace(" ")))
                args[1] = args[1].with_changes(comma=cst.MaybeSentinel.DEFAULT)
        else:
            args = [a.with_changes(value=cst.SimpleString("'?'"))
                    if a.keyword is not None and a.keyword.value == "nargs" else a
                    for a in args]
        call = call.with_changes(args=args)
        return self._with_keyword(call, "default", suppress)
