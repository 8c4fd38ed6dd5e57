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


def freeze_placed_sources(monkeypatch, root) -> tuple:
    """Point apply's placed file sets at a snapshot of this project's dcn_ext/ and patches/,
    so that edits to those folders while tests run cannot change what apply places."""
    from pathlib import Path

    from patcher import apply as core
    from patcher.codemods.placed_files import PLACED, PlacedFiles

    frozen = []
    for placed in PLACED:
        snapshot = Path(root) / placed.NAME
        for relative, content in placed.files().items():
            inside = relative[len(placed.destination):].lstrip("/") if placed.destination \
                else relative
            (snapshot / inside).parent.mkdir(parents=True, exist_ok=True)
            (snapshot / inside).write_bytes(content)
        frozen.append(PlacedFiles(placed.NAME, placed.DESCRIPTION,
                                  lambda s=snapshot: s, placed.destination, placed.required))
    monkeypatch.setattr(core, "PLACED", tuple(frozen))
    return tuple(frozen)
