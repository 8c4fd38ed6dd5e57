"""Helpers for the codemod tests: run a codemod on a dedented snippet, check idempotency."""
from __future__ import annotations

import textwrap

from patcher.codemods.base import APPLIED, CHANGED, CodemodResult, Target, run_codemod


def code(snippet: str) -> str:
    return textwrap.dedent(snippet).lstrip("\n")


def run(codemod, path: str, before: str, *, required: bool = True) -> CodemodResult:
    return run_codemod(codemod, Target(path, "the target", required=required), code(before))


def assert_codemod(codemod, path: str, before: str, after: str) -> CodemodResult:
    """``before`` becomes ``after``; a second run on ``after`` changes nothing."""
    result = run(codemod, path, before)
    assert result.outcome == CHANGED, result.messages
    assert result.new_source == code(after)
    again = run_codemod(codemod, Target(path, "the target"), result.new_source)
    assert again.outcome == APPLIED, again.messages
    assert again.new_source == result.new_source
    return result
