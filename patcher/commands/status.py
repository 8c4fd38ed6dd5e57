"""`centernet-patch status`: each codemod's state on a CenterNet tree."""
from __future__ import annotations

import argparse
from pathlib import Path

HELP = "show each codemod as applied, pending or drifted on a CenterNet tree"
DESCRIPTION = """\
For each codemod and each set of placed files, say whether TARGET has it applied,
pending (apply would change it) or drifted (the expected construct is not there: the tree
differs from the CenterNet commit the codemods know), and whether the torch
_iter_filter edit is needed. Writes nothing. Exit 0 when nothing is pending or drifted,
1 otherwise."""


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("target", metavar="TARGET", type=Path, help="the CenterNet checkout")


def execute(args: argparse.Namespace, ui) -> int:
    from patcher import apply as core

    rows = core.status(args.target)
    ui.table(f"centernet-patch status of {args.target}", ["codemod", "state", "detail"],
             [list(row) for row in rows])
    return 0 if all(state in (core.STATE_APPLIED, core.STATE_NOT_NEEDED)
                    for _, state, _ in rows) else 1
