"""`centernet-patch demo`: the whole pipeline, offline, on the built-in miniature."""
from __future__ import annotations

import argparse
from pathlib import Path

HELP = "run the whole pipeline offline on a built-in CenterNet miniature (clone, apply, build, export, verify)"
DESCRIPTION = """\
Create a miniature of CenterNet's repository (written by this project: same layout and
patch targets, tiny networks), clone it as if it were the upstream, then apply the
codemods, build the DCN extension, export one task to ONNX with random weights and verify
the export against PyTorch. Prints a summary table and where the outputs are.

Needs no network and no GPU. Everything is written under --workdir; a directory made by a
previous demo run is emptied first, any other non-empty directory is refused."""


def configure(parser: argparse.ArgumentParser) -> None:
    from patcher.demo import DEFAULT_TASK, DEFAULT_WORKDIR

    parser.add_argument("--workdir", type=Path, default=DEFAULT_WORKDIR, metavar="DIR",
                        help=f"where the miniature, the patched clone and the ONNX model go "
                             f"(default: ./{DEFAULT_WORKDIR})")
    parser.add_argument("--task", choices=("ctdet", "ddd", "multi_pose"), default=DEFAULT_TASK,
                        help=f"which CenterNet task to export and verify (default: {DEFAULT_TASK})")


def execute(args: argparse.Namespace, ui) -> int:
    from patcher.demo import FAILED, run_demo

    report = run_demo(args.workdir, task=args.task, sink=ui.sink)
    ui.table(f"centernet-patch demo: {report.task} on the built-in miniature",
             ["stage", "result", "details"],
             [[s.name, s.status, s.detail] for s in report.stages])
    if report.heads:
        ui.table("Verification: ONNX Runtime vs PyTorch, per head",
                 ["head", "max abs error", "max rel error", "tolerance", "result"],
                 [[h.name, f"{h.max_abs:.3e}", f"{h.max_rel:.3e}", h.tolerance,
                   "pass" if h.passed else "FAIL"] for h in report.heads])
    for stage in report.stages:
        if stage.status == FAILED and stage.traceback and args.debug:
            ui.err_console.print(stage.traceback, markup=False, highlight=False)
    ui.table("Outputs", ["what", "where"],
             [[what, str(path)] for what, path in report.outputs.items()])
    if report.failed:
        first = report.failed[0]
        ui.error(f"the demo failed at {first.name}: {first.detail}",
                 tip="rerun with `centernet-patch --debug demo` for details" if first.traceback
                 else None)
    elif all(s.status == "passed" for s in report.stages):
        ui.success("demo passed: every stage ran and the export matches PyTorch")
    else:
        ui.warn("demo finished; some stages are not delivered yet (see the table)")
    return report.exit_code
