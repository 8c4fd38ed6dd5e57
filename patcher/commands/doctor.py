"""`centernet-patch doctor`: what this machine has for each stage, and what is disabled."""
from __future__ import annotations

import argparse
import json

HELP = "show what this machine has for each stage (torch, CUDA, compilers, ONNX Runtime, TensorRT, GPU)"
DESCRIPTION = """\
Look at this machine and print one table: Python, PyTorch and its CUDA, nvcc, the C++
compiler, CMake, ninja, ONNX, ONNX Runtime (it runs a tiny DeformConv model), onnxscript,
TensorRT (Python package, headers, libnvinfer) and the GPU, with what each missing piece
disables; then which stages can run here. Nothing is installed or changed.

TensorRT headers are looked for in $TENSORRT_ROOT/include, /usr/include/x86_64-linux-gnu,
/usr/local/tensorrt/include and ./.vendor/TensorRT/include."""


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true",
                        help="print the findings and stage readiness as JSON instead of tables")


def execute(args: argparse.Namespace, ui) -> int:
    from patcher.doctor import diagnose

    report = diagnose(sink=ui.sink)
    if args.json:
        ui.console.print_json(json.dumps(report.to_dict()))
        return 0
    ui.table("What this machine has", ["component", "status", "found", "if missing, disables"],
             [[f.component, f.status, f.detail, "" if f.ok else f.when_missing]
              for f in report.findings])
    ui.table("Stages", ["stage", "can run here", "missing"],
             [[stage, "no" if lacks else "yes", ", ".join(lacks)]
              for stage, lacks in report.stage_blockers().items()])
    return 0
