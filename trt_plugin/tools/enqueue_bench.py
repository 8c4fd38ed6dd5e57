"""GPU time of the plugin's enqueue on the 16 DLA-34 DCN layers, without TensorRT.

Runs the C++ harness (tools/dcnv2Harness.cpp) with "time_enqueues": each layer is enqueued
once (TensorRT's warm-up), then 20 enqueues are captured into a CUDA graph and replayed
(CUDA events, median of 15), once with the weights packed by every enqueue (the default)
and once with them kept between enqueues (contract.json's plugin_keep_packed_weights_env
at 1). Prints a table and writes JSON.

    python trt_plugin/tools/enqueue_bench.py --build BUILD_DIR --work DIR [--json OUT.json]
        [--dtype float16] [--layout channels_last|nchw] [--batch 1]
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import torch

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench.dcn_layers import model_layers  # noqa: E402
from dcn_ext.contract import CONTRACT  # noqa: E402
from gpu_check import DTYPES, Case, field_specs, raw_bytes, run_harness  # noqa: E402

INPUTS = ((512, 512), (384, 1280))
TIMED_ENQUEUES = 20
SETTINGS = {"packed_per_enqueue": None, "kept": "1"}


def write_layer(directory: Path, case: Case, dtype_name: str, batch: int, channels_last: bool) -> None:
    """case.txt and inputs for one problem of `batch` images (offsets sigma 2 px)."""
    directory.mkdir(parents=True, exist_ok=True)
    dtype = DTYPES[dtype_name]
    g = torch.Generator().manual_seed(0)
    names = CONTRACT.inputs
    tensors = {
        names[0]: torch.randn(batch, case.channels, case.height, case.width, generator=g),
        names[1]: torch.randn(batch, 18, case.height, case.width, generator=g) * case.offset_scale,
        names[2]: torch.rand(batch, 9, case.height, case.width, generator=g),
        names[3]: torch.randn(case.out_channels, case.channels, 3, 3, generator=g) / (9 * case.channels) ** 0.5,
        names[4]: torch.randn(case.out_channels, generator=g),
    }
    lines = [f"dtype {dtype_name}", f"layout {'channels_last' if channels_last else 'nchw'}",
             f"time_enqueues {TIMED_ENQUEUES}"]
    lines += [f"field {name}={value}" for name, value in field_specs(case).items()]
    lines.append("problem layer")
    for name, tensor in tensors.items():
        tensor = tensor.to(dtype)
        lines.append(f"input {name} " + " ".join(str(d) for d in tensor.shape))
        stored = tensor.permute(0, 2, 3, 1) if channels_last and name == names[0] else tensor
        (directory / f"layer.{name}.bin").write_bytes(raw_bytes(stored))
    (directory / "case.txt").write_text("\n".join(lines) + "\n")


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--build", type=Path, required=True, help="CMake build dir with the plugin and harness")
    parser.add_argument("--work", type=Path, required=True, help="scratch directory for raw tensors")
    parser.add_argument("--json", type=Path, help="write the results here")
    parser.add_argument("--dtype", default="float16", choices=sorted(DTYPES))
    parser.add_argument("--layout", default="channels_last", choices=("channels_last", "nchw"))
    parser.add_argument("--batch", type=int, default=1)
    args = parser.parse_args(argv)
    if args.batch < 1:
        parser.error(f"--batch: got: {args.batch} expected: >= 1")
    library = args.build / "libdcn_trt_plugin.so"
    harness = args.build / "dcnv2_harness"
    channels_last = args.layout == "channels_last"
    rows: List[Dict] = []
    print(f"{'input':9s} {'layer':22s} {'cin->cout':10s} {'HxW':8s} "
          + " ".join(f"{setting:>20s}" for setting in SETTINGS))
    for hw in INPUTS:
        for layer in model_layers("dla_34", hw, args.batch):
            case = Case(layer.name, layer.cin, layer.cout, layer.height, layer.width, (3, 3), (1, 1), (1, 1), (1, 1),
                        1, 1, True, 2.0)
            directory = args.work / f"{hw[0]}x{hw[1]}_{layer.name}"
            write_layer(directory, case, args.dtype, args.batch, channels_last)
            row = {"input": f"{hw[0]}x{hw[1]}", "layer": layer.name, "cin": layer.cin, "cout": layer.cout,
                   "height": layer.height, "width": layer.width}
            for setting, value in SETTINGS.items():
                run = run_harness(harness, library, directory, keep_packed_weights=value)
                verdict = run["harness"] or {}
                if run["returncode"] != 0 or not verdict.get("ok"):
                    print(f"{layer.name}: the harness failed ({setting}): {json.dumps(run)[:2000]}", file=sys.stderr)
                    return 1
                row[f"{setting}_us"] = verdict["problems"][0]["enqueue_us"]
            rows.append(row)
            print(f"{row['input']:9s} {layer.name:22s} {f'{layer.cin}->{layer.cout}':10s} "
                  f"{f'{layer.height}x{layer.width}':8s} "
                  + " ".join(f"{row[f'{setting}_us']:17.1f} us" for setting in SETTINGS))
    sums = {}
    for hw in INPUTS:
        key = f"{hw[0]}x{hw[1]}"
        sums[key] = {setting: sum(r[f"{setting}_us"] for r in rows if r["input"] == key) for setting in SETTINGS}
        print(f"sum of the 16 layers at {key}: " + ", ".join(f"{s} {v:.1f} us" for s, v in sums[key].items()))
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no CUDA device"
    if args.json:
        args.json.write_text(json.dumps({"device": device, "dtype": args.dtype, "layout": args.layout,
                                         "batch": args.batch, "timed_enqueues": TIMED_ENQUEUES,
                                         "layers": rows, "sums": sums}, indent=1))
    print(f"device: {device}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
