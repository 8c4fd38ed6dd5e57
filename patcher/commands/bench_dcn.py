"""`centernet-patch bench-dcn`: the DCN forward kernels against torchvision and the roofline."""
from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path

HELP = "time our DCN forward against torchvision per CenterNet layer (needs a CUDA GPU)"
DESCRIPTION = """\
Run bench/bench_dcn.py of this checkout: the 16 DLA-34 DCN layer shapes at 512x512 and
384x1280 and the 3 resdcn_18 shapes, batch 1 and 8, fp32/fp16/bf16, through dcn_ext's
forward (the implicit-GEMM kernel where it applies) and torchvision.ops.deform_conv2d on the
same tensors. GPU time by CUDA events over CUDA-graph replay, median of repeats; the sums,
the ratio to torchvision, the fraction of the roofline floor and the error against the
float64 reference. Writes bench_dcn.json, bench_dcn.md and bench_dcn.png to --out.
With --network, also the whole DLA-34 ddd forward of a patched CenterNet tree."""

BENCH_SCRIPT = Path(__file__).resolve().parents[2] / "bench" / "bench_dcn.py"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, default=Path("bench-dcn-results"), metavar="DIR",
                        help="where to write the JSON, markdown and chart (default ./bench-dcn-results)")
    parser.add_argument("--dtypes", default="fp16,fp32,bf16", help="comma list (default fp16,fp32,bf16)")
    parser.add_argument("--batches", default="1,8", help="comma list of batch sizes (default 1,8)")
    parser.add_argument("--network", type=Path, default=None, metavar="CENTERNET",
                        help="a patched CenterNet tree: also time the whole DLA-34 ddd forward")


def _load_bench():
    from patcher.errors import MissingDependencyError
    if not BENCH_SCRIPT.is_file():
        raise MissingDependencyError(f"{BENCH_SCRIPT}: the benchmark script is not there",
                                     tip="run bench-dcn from a checkout of centernet-patch")
    spec = importlib.util.spec_from_file_location("centernet_patch_bench_dcn", BENCH_SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def execute(args: argparse.Namespace, ui) -> int:
    from patcher.errors import MissingDependencyError, UsageError
    import torch

    if not torch.cuda.is_available():
        raise MissingDependencyError(
            "no CUDA GPU is present: bench-dcn times GPU kernels and has nothing to measure here",
            tip="run it on a machine with an NVIDIA GPU and dcn_ext built with CUDA")
    bench = _load_bench()
    dtypes = [d for d in args.dtypes.split(",") if d]
    bad = [d for d in dtypes if d not in bench.DTYPE_NAMES]
    if bad:
        raise UsageError(f"--dtypes: got: {','.join(bad)} expected: some of {','.join(bench.DTYPE_NAMES)}")
    try:
        batches = [int(b) for b in args.batches.split(",") if b]
    except ValueError:
        raise UsageError(f"--batches: got: {args.batches!r} expected: comma-separated integers") from None
    report = bench.run(args.out, dtypes, batches, args.network, log=ui.info)
    rows = [[s["model"], s["input"], s["batch"], s["dtype"], f"{s['ours_us']:.1f}",
             f"{s['ours_channels_last_us']:.1f}",
             f"{s['torchvision_us']:.1f}" if "torchvision_us" in s else "-",
             bench.ratio(s.get("torchvision_us"), s["ours_us"]) or "-",
             f"{s['floor_us'] / s['ours_us']:.2f}", f"{s['worst_rel_l2']:.1e}"] for s in report["sums"]]
    ui.table(f"DCN layers summed, {report['device']}",
             ["model", "input", "batch", "dtype", "ours µs", "ours channels-last µs", "torchvision µs",
              "tv/ours", "floor/ours",
              "worst rel L2"], rows)
    if "network" in report:
        for layout in ("nchw", "channels_last"):
            n = report["network"][layout]
            ui.info(f"DLA-34 ddd forward 384x1280 fp16 b1, {layout}: ours {n['ours_ms']:.3f} ms, "
                    f"torchvision {n['torchvision_ms']:.3f} ms")
    ui.info(f"report: {args.out / 'bench_dcn.json'}, {args.out / 'bench_dcn.md'}")
    return 0
