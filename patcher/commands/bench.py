"""`centernet-patch bench ENGINE`: latency and throughput of a TensorRT engine."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

HELP = "time a TensorRT engine: mean/median/p99 latency and images/s (table + JSON)"
DESCRIPTION = """\
Deserialize ENGINE (loading the DCN plugin named in its ENGINE.json, or --plugin), feed
seeded random inputs at --batch (the profile's shape otherwise), run --warmup untimed
executions, then time --iters executions one by one with CUDA events. Prints a table and
writes JSON (default: ENGINE.bench.json). Needs TensorRT's Python package and a GPU."""


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("engine", type=Path, metavar="ENGINE",
                        help="a serialized engine written by build-engine")
    parser.add_argument("--plugin", type=Path, default=None, metavar="LIB",
                        help="the DCN plugin library (default: the one recorded for the engine)")
    parser.add_argument("--batch", type=int, default=1, help="images per execution (default 1)")
    parser.add_argument("--warmup", type=int, default=20, help="untimed executions first (default 20)")
    parser.add_argument("--iters", type=int, default=200, help="timed executions (default 200)")
    parser.add_argument("--json", type=Path, default=None, metavar="FILE",
                        help="JSON report (default: ENGINE.bench.json)")
    parser.add_argument("--keep-packed-weights", action="store_true",
                        help="the DCN plugin packs its weights once and keeps them between executions "
                             "(its keep-packed-weights variable, trt_plugin/README.md): only for engines "
                             "whose DCN weights are never refit")


def execute(args: argparse.Namespace, ui) -> int:
    from patcher.tensorrt import bench_engine, require

    require("bench")
    stats = bench_engine(args.engine, warmup=args.warmup, iters=args.iters, batch=args.batch,
                         plugin_library=args.plugin, sink=ui.sink, keep_weights=args.keep_packed_weights)
    ui.table(f"{args.engine.name} on {stats.device} (TensorRT {stats.tensorrt_version})",
             ["batch", "runs", "mean ms", "median ms", "p99 ms", "min ms", "images/s"],
             [[stats.batch, stats.iters, f"{stats.mean_ms:.3f}", f"{stats.median_ms:.3f}",
               f"{stats.p99_ms:.3f}", f"{stats.min_ms:.3f}", f"{stats.images_per_s:.1f}"]])
    ui.info("DCN plugin: packed weights " + ("kept between executions" if stats.plugin_keep_packed_weights == "1"
                                             else "packed by every execution"))
    report = args.json or Path(str(args.engine) + ".bench.json")
    report.write_text(json.dumps(stats.to_json(), indent=2), encoding="utf-8")
    ui.info(f"report: {report}")
    return 0
