"""`centernet-patch build-engine MODEL.onnx`: a TensorRT engine with the DCN plugin."""
from __future__ import annotations

import argparse
from pathlib import Path

HELP = "build a TensorRT engine from an exported model, with the DCN plugin loaded"
DESCRIPTION = """\
Load the DCN plugin library, parse MODEL.onnx with TensorRT's ONNX parser and build an
engine (default: MODEL.engine beside the model), with a build log beside it and a sidecar
ENGINE.json naming the plugin the engine needs. A model with a dynamic batch dimension gets
one optimization profile (--min-batch/--opt-batch/--max-batch, default 1/1/8).

Precision: on TensorRT 11 it is what the ONNX tensor types say (export with
--precision fp16 for an fp16 engine); --fp16 sets the builder's FP16 flag on TensorRT 10.

The plugin is the one built into the patched tree (trt_plugin_build/ at or above the
model's folder, or in the tree named in the model's metadata) unless --plugin names a
library. Needs TensorRT's Python package and a GPU."""


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", type=Path, metavar="MODEL.onnx",
                        help="the exported ONNX model (DCN nodes as plugin ops)")
    parser.add_argument("--plugin", type=Path, default=None, metavar="LIB",
                        help="the DCN plugin library (default: the patched tree's build)")
    parser.add_argument("--out", type=Path, default=None, metavar="ENGINE",
                        help="where to write the engine (default: MODEL.engine)")
    parser.add_argument("--fp16", action="store_true",
                        help="TensorRT 10 only: allow fp16 kernels (TensorRT 11 reads the ONNX types)")
    parser.add_argument("--min-batch", type=int, default=None, help="smallest batch of the profile")
    parser.add_argument("--opt-batch", type=int, default=None, help="batch TensorRT tunes for")
    parser.add_argument("--max-batch", type=int, default=None, help="largest batch of the profile")
    parser.add_argument("--log", type=Path, default=None, help="build log (default: ENGINE.build.log)")


def execute(args: argparse.Namespace, ui) -> int:
    from patcher.errors import UsageError
    from patcher.tensorrt import DEFAULT_BATCH_PROFILE, build_engine, default_plugin_library, require

    require("build-engine")  # first: without TensorRT nothing else matters
    plugin = args.plugin or default_plugin_library(args.model)
    given = (args.min_batch, args.opt_batch, args.max_batch)
    profile = None
    if any(v is not None for v in given):
        defaults = DEFAULT_BATCH_PROFILE
        low = args.min_batch if args.min_batch is not None else defaults[0]
        high = args.max_batch if args.max_batch is not None else max(defaults[2], low)
        opt = args.opt_batch if args.opt_batch is not None else low
        profile = (low, opt, high)
        if not 1 <= low <= opt <= high:
            raise UsageError(f"need 1 <= --min-batch <= --opt-batch <= --max-batch: got: {profile}")
    out = args.out or args.model.with_suffix(".engine")
    result = build_engine(args.model, out, plugin_library=plugin, fp16=args.fp16,
                          batch_profile=profile, log_path=args.log, sink=ui.sink)
    ui.table(f"TensorRT engine for {args.model.name}", ["item", "value"], [
        ["engine", str(result.engine_path)],
        ["TensorRT", result.tensorrt_version],
        ["precision", result.precision],
        ["batch profile (min, opt, max)",
         ", ".join(map(str, result.batch_profile)) if result.batch_profile else "fixed batch"],
        ["inputs", "; ".join(f"{k} {v}" for k, v in result.inputs.items())],
        ["plugin", str(plugin)],
        ["build log", str(result.log_path)],
    ])
    ui.success(f"engine written: {result.engine_path}")
    return 0
