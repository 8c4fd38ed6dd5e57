"""Where a layer's time goes (GPU machine): builds bench/igemm_dev_ext.cu four times with
DCN_IGEMM_PROBE = 0 (full kernel), 1 (return at entry), 2 (no K loop: launch, split-K
reduction and epilogue only), 3 (corner tables filled, no K steps), and times each on the
16 DLA-34 layer shapes (fp16, batch 1, channels-last input, packed weights and split-K
counters kept by the caller, as dcn_ext runs them). Also times an empty graph node.
Prints a table and writes $OUT/igemm_breakdown_<input>.json (BREAKDOWN_INPUT, default
512x512)."""
from __future__ import annotations

import json
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from bench.bench_dcn import gpu_time_us  # noqa: E402
from bench.dcn_layers import model_layers  # noqa: E402

OUT = Path(os.environ.get("OUT", "/tmp/out"))
PROBES = {0: "full", 1: "entry", 2: "no K loop", 3: "tables only"}


def build(probe: int):
    from torch.utils.cpp_extension import load
    build_dir = Path(f"/tmp/igemm_probe_{probe}")
    build_dir.mkdir(parents=True, exist_ok=True)
    return load(name=f"igemm_probe_{probe}", sources=[str(ROOT / "bench/igemm_dev_ext.cu")],
                build_directory=str(build_dir),
                extra_cuda_cflags=["-O3", "-std=c++17", "-gencode=arch=compute_90a,code=sm_90a", "-DDCN_IGEMM_WGMMA",
                                   f"-DDCN_IGEMM_PROBE={probe}", "-DDCN_DEV_HALF_ONLY"], verbose=False)


def _build_only(probe: int) -> int:
    build(probe)
    return probe


def main() -> int:
    OUT.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    with ProcessPoolExecutor(len(PROBES)) as pool:
        list(pool.map(_build_only, PROBES))
    exts = {p: build(p) for p in PROBES}
    print(f"built in {time.time() - t0:.0f}s", flush=True)
    one = torch.zeros(1, device="cuda")
    empty_node = gpu_time_us(lambda: one.zero_())
    print(f"one tiny kernel per call: {empty_node:.2f} us", flush=True)
    rows = []
    hw = tuple(int(v) for v in os.environ.get("BREAKDOWN_INPUT", "512x512").split("x"))
    seen = {}
    for layer in model_layers("dla_34", hw, 1):
        key = (layer.cin, layer.cout, layer.height, layer.width)
        if key in seen:
            seen[key]["count"] += 1
            continue
        g = torch.Generator(device="cuda").manual_seed(0)
        cin, cout, h, w = key
        x = torch.randn(1, cin, h, w, device="cuda", generator=g).half()
        x_cl = x.contiguous(memory_format=torch.channels_last)
        off = (2 * torch.randn(1, 18, h, w, device="cuda", generator=g)).half()
        mask = torch.rand(1, 9, h, w, device="cuda", generator=g).half()
        wt = (torch.randn(cout, cin, 3, 3, device="cuda", generator=g) / (9 * cin) ** 0.5).half()
        b = torch.randn(cout, device="cuda", generator=g).half()
        ext0 = exts[0]
        tile, split, _ = ext0.auto_config(x, off, wt, 1, 1, 1, 1)
        packed = ext0.pack_weights(x, off, wt, 1, 1, 1, 1)
        counters = torch.zeros(1 << 16, dtype=torch.int32, device="cuda")
        ws = torch.empty(max(ext0.workspace_bytes(x, off, wt, 1, 1, 1, 1, -1, 0), 256), dtype=torch.uint8,
                         device="cuda")
        row = dict(cin=cin, cout=cout, h=h, w=w, tile=tile, split=split, count=1, us={})
        for p, ext in exts.items():
            row["us"][PROBES[p]] = gpu_time_us(
                lambda: ext.forward(x_cl, off, mask, wt, b, ws, 1, 1, 1, 1, -1, 0, packed, counters))
        row["us"]["full, NCHW input"] = gpu_time_us(
            lambda: ext0.forward(x, off, mask, wt, b, ws, 1, 1, 1, 1, -1, 0, packed, counters))
        seen[key] = row
        rows.append(row)
        print(f"{cin:4d}->{cout:<4d} {h:4d}x{w:<4d} tile {tile} split {split}: " +
              "  ".join(f"{k} {v:6.1f}" for k, v in row["us"].items()), flush=True)
    sums = {k: sum(r["count"] * r["us"][k] for r in rows) for k in rows[0]["us"]}
    print("| probe | sum of the 16 layers, us |\n|---|---|")
    for k, v in sums.items():
        print(f"| {k} | {v:.1f} |")
    (OUT / f"igemm_breakdown_{hw[0]}x{hw[1]}.json").write_text(json.dumps(
        dict(device=torch.cuda.get_device_name(), input=hw, empty_node_us=empty_node, rows=rows, sums=sums),
        indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
