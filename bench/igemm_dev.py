"""Development driver for the implicit-GEMM kernel (GPU machine): builds bench/igemm_dev_ext.cu,
checks every block shape / split against the float64 reference, and sweeps the
configurations per layer shape against torchvision. Writes $OUT/igemm_dev.json."""
from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from bench.bench_dcn import gpu_time_us  # noqa: E402
from bench.dcn_layers import model_layers  # noqa: E402
from dcn_ext.reference import modulated_deform_conv2d_reference as reference  # noqa: E402

OUT = Path(os.environ.get("OUT", "/tmp/out"))
OUT.mkdir(parents=True, exist_ok=True)


def build():
    from torch.utils.cpp_extension import load
    t = time.time()
    ext = load(name="igemm_dev_ext", sources=[str(ROOT / "bench/igemm_dev_ext.cu")],
               extra_cuda_cflags=["-O3", "-std=c++17", "-gencode=arch=compute_90a,code=sm_90a",
                                  "-DDCN_IGEMM_WGMMA", "-Xptxas=-v", *os.environ.get("DEV_CFLAGS", "").split()],
               verbose=False)
    print(f"built in {time.time() - t:.0f}s", flush=True)
    return ext


def make_inputs(n, cin, cout, h, w, dtype, k=3, stride=1, pad=1, dg=1, seed=0):
    g = torch.Generator(device="cuda").manual_seed(seed)
    ho = (h + 2 * pad - k) // stride + 1
    wo = (w + 2 * pad - k) // stride + 1
    x = torch.randn(n, cin, h, w, device="cuda", generator=g).to(dtype)
    off = (2.0 * torch.randn(n, 2 * dg * k * k, ho, wo, device="cuda", generator=g)).to(dtype)
    mask = torch.sigmoid(torch.randn(n, dg * k * k, ho, wo, device="cuda", generator=g)).to(dtype)
    wt = (torch.randn(cout, cin, k, k, device="cuda", generator=g) / (cin * k * k) ** 0.5).to(dtype)
    b = torch.randn(cout, device="cuda", generator=g).to(dtype)
    return x, off, mask, wt, b


def rel_l2(out, ref):
    return (torch.linalg.vector_norm(out.double() - ref) / torch.linalg.vector_norm(ref)).item()


gpu_us = gpu_time_us


DT = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
TILES = {0: "32x64", 1: "64x64", 2: "64x128", 3: "32x128", 4: "32x64w8", 5: "64x64w8", 6: "64x128w8",
         7: "128x64w8", 8: "128x128w8", 9: "64x64wg", 10: "128x64wg", 11: "64x128wg", 12: "128x128wg",
         13: "64x256wg", 14: "64x64ws", 15: "64x128ws", 16: "128x64ra", 17: "32x64ws", 18: "32x128ws",
         19: "128x64ws", 20: "64x256ws", 21: "32x256ws",
         # the ws tiles with the last slice summing all (igemm_dev_ext.cu: config_of), for A/B
         114: "64x64ws-last", 115: "64x128ws-last", 117: "32x64ws-last", 118: "32x128ws-last",
         119: "128x64ws-last", 120: "64x256ws-last", 121: "32x256ws-last"}
WS_TILES = {14, 15, 17, 18, 19, 20, 21, 114, 115, 117, 118, 119, 120, 121}  # warp-specialised: 3x3 kernels with one deformable group only
FP32_ONLY = {19, 119}  # the 128-row ws tile is built for fp32 only
TOO_BIG_FOR_FP32 = {13, 20, 21, 120, 121}  # 256 outputs with big and small fp32 parts: more shared memory than its tiles fit
WIDE_TILES = {13, 20, 21, 120, 121}  # 256 outputs a tile
RA_TILES = {16}  # register-A: 16-bit types, up to 64 input channels, 3x3, one group, no split
PHASES = os.environ.get("DEV_PHASES", "acc,bits,prof,sweep").split(",")


def tile_fits_outputs(tile, cout):
    """valid_config: a 256-output tile only where 256 divides the outputs padded to 128 (the
    packed weights end there)."""
    return tile not in WIDE_TILES or -(-cout // 256) * 256 <= -(-cout // 128) * 128


def main():
    ext = build()
    results = {"device": torch.cuda.get_device_name(), "accuracy": [], "sweep": []}
    # --- correctness: odd shapes, every tile and a split, each dtype
    cases = [  # n, cin, cout, h, w, k, stride, pad, dg
        (3, 72, 40, 17, 23, 3, 1, 1, 1),
        (1, 64, 64, 16, 16, 3, 1, 1, 1),
        (2, 96, 130, 13, 29, 3, 2, 1, 1),
        (1, 128, 32, 9, 11, 3, 1, 2, 2),
        (2, 33, 17, 8, 8, 1, 1, 0, 1),
        (1, 512, 256, 16, 16, 3, 1, 1, 1),
        (2, 128, 48, 12, 13, 5, 1, 2, 2),   # 25 taps: the corner table is refilled per window of taps
    ]
    worst = {}
    acc_dtypes = os.environ.get("DEV_ACC", ",".join(DT)).split(",")
    for dname, dtype in ([(d, DT[d]) for d in acc_dtypes] if "acc" in PHASES else []):
        for case in cases:
            n, cin, cout, h, w, k, st, pd, dg = case
            x, off, mask, wt, b = make_inputs(n, cin, cout, h, w, dtype, k, st, pd, dg, seed=len(results["accuracy"]))
            ref = reference(x, off, mask, wt, b, st, pd, 1, 1, dg)
            tiles = [int(t) for t in os.environ.get("DEV_ACC_TILES", ",".join(map(str, TILES))).split(",")]
            tiles = [t for t in tiles if (dname != "fp32" or t not in TOO_BIG_FOR_FP32)
                     and (dname == "fp32" or t not in FP32_ONLY)
                     and (t not in WS_TILES or k * k * dg <= 9)
                     and tile_fits_outputs(t, cout)
                     and (t not in RA_TILES or (dname != "fp32" and cin <= 64 and k == 3 and dg == 1))]
            ksteps = ext.auto_config(x, off, wt, st, pd, 1, dg)[2]
            chunk = 32 if dname == "fp32" else 64
            layouts = ["nchw"] + (["channels_last"] if (cin // dg) % chunk == 0 else [])
            for tile, split, layout in [(t, s_, lay) for t in [-1] + tiles
                                        for s_ in (([1] if t in RA_TILES else [1, 2]) if t >= 0 else [0])
                                        for lay in layouts]:
                if split > ksteps:
                    continue
                xin, packed, counters = x, None, None
                if layout == "channels_last":  # read in place, weights kept packed, counters kept
                    xin = x.contiguous(memory_format=torch.channels_last)
                    packed = ext.pack_weights(x, off, wt, st, pd, 1, dg)
                    counters = torch.zeros(1 << 16, dtype=torch.int32, device="cuda")
                ws = torch.empty(ext.workspace_bytes(x, off, wt, st, pd, 1, dg, tile, split), dtype=torch.uint8, device="cuda")
                y = ext.forward(xin, off, mask, wt, b, ws, st, pd, 1, dg, tile, split, packed, counters)
                y2 = ext.forward(xin, off, mask, wt, b, ws, st, pd, 1, dg, tile, split, packed, counters)
                torch.cuda.synchronize()
                e = rel_l2(y, ref)
                rep = bool(torch.equal(y, y2))
                results["accuracy"].append(dict(dtype=dname, case=case, tile=tile, split=split, layout=layout,
                                                rel_l2=e, repeatable=rep))
                worst[dname] = max(worst.get(dname, 0), e if e == e else 1e9)
                if not rep or not (e < (1e-5 if dname == "fp32" else 2e-3)):
                    print(f"BAD {dname} {case} tile={tile} split={split} {layout} err={e:.3g} repeat={rep}", flush=True)
    print("worst rel L2:", worst, flush=True)
    # --- the warp-specialised tiles give the bits of their wgmma twins at the same split
    twins = {14: 9, 15: 11, 114: 9, 115: 11, 17: 9, 18: 11, 117: 9, 118: 11, 19: 10, 119: 10, 20: 13, 120: 13, 21: 13, 121: 13}
    bits_bad = 0
    for dname in (DT if "bits" in PHASES else []):
        for (n, cin, cout, h, w) in [(1, 64, 64, 16, 16), (3, 72, 40, 17, 23), (1, 512, 256, 16, 16),
                                     (2, 128, 130, 13, 29), (1, 256, 128, 32, 32)]:
            x, off, mask, wt, b = make_inputs(n, cin, cout, h, w, DT[dname])
            pairs = {t: twin for t, twin in twins.items() if (dname == "fp32" or t not in FP32_ONLY)
                     and (dname != "fp32" or t not in TOO_BIG_FOR_FP32)
                     and tile_fits_outputs(t, cout)}
            for split in [1, 2, 3, 8]:
                outs = {}
                for tile in {*pairs, *pairs.values()}:
                    ws = torch.empty(ext.workspace_bytes(x, off, wt, 1, 1, 1, 1, tile, split), dtype=torch.uint8, device="cuda")
                    outs[tile] = ext.forward(x, off, mask, wt, b, ws, 1, 1, 1, 1, tile, split, None, None)
                same = {TILES[t]: bool(torch.equal(outs[t], outs[twin])) for t, twin in pairs.items()}
                bits_bad += not all(same.values())
                results.setdefault("bits", []).append(dict(dtype=dname, case=(n, cin, cout, h, w), split=split, same=same))
                if not all(same.values()):
                    print(f"BAD bits {dname} {(n, cin, cout, h, w)} split={split}: {same}", flush=True)
    if "bits" in PHASES:
        print("ws tiles vs wgmma twins:", "identical bits" if bits_bad == 0 else f"{bits_bad} cases differ", flush=True)
    # --- per-kernel split of a call (prepare vs GEMM)
    from torch.profiler import profile, ProfilerActivity
    for (cin, cout, h, w) in ([(64, 64, 128, 128), (512, 256, 16, 16), (128, 128, 64, 64), (64, 64, 96, 320)] if "prof" in PHASES else []):
        x, off, mask, wt, b = make_inputs(1, cin, cout, h, w, torch.float16)
        ws = torch.empty(ext.workspace_bytes(x, off, wt, 1, 1, 1, 1, -1, 0), dtype=torch.uint8, device="cuda")
        for _ in range(3):
            ext.forward(x, off, mask, wt, b, ws, 1, 1, 1, 1, -1, 0, None, None)
        torch.cuda.synchronize()
        with profile(activities=[ProfilerActivity.CUDA]) as prof:
            for _ in range(10):
                ext.forward(x, off, mask, wt, b, ws, 1, 1, 1, 1, -1, 0, None, None)
            torch.cuda.synchronize()
        for evt in prof.key_averages():
            t = getattr(evt, "device_time", None) or getattr(evt, "cuda_time", 0)
            print(f"  prof {cin}->{cout} {h}x{w}: {evt.key[:60]} {t:.1f} us x{evt.count}", flush=True)
    # --- sweep
    import torchvision
    shapes = {}
    batches = [int(b) for b in os.environ.get("DEV_BATCHES", "1,8").split(",")]
    for hw in [(512, 512), (384, 1280)]:
        for batch in batches:
            for layer in model_layers("dla_34", hw, batch):
                key = (layer.cin, layer.cout, layer.height, layer.width, batch)
                shapes.setdefault(key, [hw, 0])[1] += 1
    if os.environ.get("DEV_SHAPES"):  # cin-cout-h-w,...: only these layer shapes
        keep = {tuple(int(v) for v in item.split("-")) for item in os.environ["DEV_SHAPES"].split(",")}
        shapes = {key: value for key, value in shapes.items() if key[:4] in keep}
    sums = {}
    for dname in (os.environ.get("DEV_SWEEP", "fp16,fp32").split(",") if "sweep" in PHASES else []):
        dtype = DT[dname]
        for (cin, cout, h, w, batch) in shapes:
            x, off, mask, wt, b = make_inputs(batch, cin, cout, h, w, dtype)
            tv = float("nan")  # torchvision has no bf16 deform_conv2d
            if dtype != torch.bfloat16:
                tv = gpu_us(lambda: torchvision.ops.deform_conv2d(x, off, wt, b, padding=1, mask=mask))
            packed = counters = None
            if os.environ.get("DEV_CL") == "1":  # as dcn_ext runs: channels-last, weights kept packed
                x = x.contiguous(memory_format=torch.channels_last)
                packed = ext.pack_weights(x, off, wt, 1, 1, 1, 1)
                counters = torch.zeros(1 << 16, dtype=torch.int32, device="cuda")
            tile_a, split_a, ksteps = ext.auto_config(x, off, wt, 1, 1, 1, 1)
            row = dict(dtype=dname, cin=cin, cout=cout, h=h, w=w, batch=batch, torchvision_us=tv,
                       auto=(tile_a, split_a), configs={})
            tiles = [int(t) for t in os.environ.get("DEV_TILES", ",".join(map(str, TILES))).split(",")]
            for tile in tiles:
                if dname == "fp32" and tile in TOO_BIG_FOR_FP32:
                    continue
                if tile in RA_TILES and (dname == "fp32" or cin > 64):
                    continue
                for split in [int(v) for v in os.environ.get("DEV_SPLITS", "1,2,3,4,6,8,12,16").split(",")]:
                    if (split > ksteps // 2 or tile in RA_TILES) and split > 1:
                        continue
                    ws = torch.empty(ext.workspace_bytes(x, off, wt, 1, 1, 1, 1, tile, split), dtype=torch.uint8, device="cuda")
                    t = gpu_us(lambda: ext.forward(x, off, mask, wt, b, ws, 1, 1, 1, 1, tile, split, packed, counters))
                    row["configs"][f"{TILES[tile]}/s{split}"] = t
            best = min(row["configs"], key=row["configs"].get)
            ws = torch.empty(ext.workspace_bytes(x, off, wt, 1, 1, 1, 1, -1, 0), dtype=torch.uint8, device="cuda")
            row["auto_us"] = gpu_us(lambda: ext.forward(x, off, mask, wt, b, ws, 1, 1, 1, 1, -1, 0, packed, counters))
            row["best"] = best
            results["sweep"].append(row)
            hw, count = shapes[(cin, cout, h, w, batch)]
            agg = sums.setdefault(f"{dname} {hw[0]}x{hw[1]} b{batch}", [0.0, 0.0, 0.0])
            for i, v in enumerate((row["auto_us"], row["configs"][best], tv)):
                agg[i] += count * v
            results["sums"] = sums
            print(f"{dname} {cin:4d}->{cout:4d} {h:3d}x{w:<4d} b{batch}: tv {tv:7.1f}  auto {TILES[tile_a]}/s{split_a} {row['auto_us']:7.1f}  best {best} {row['configs'][best]:7.1f}", flush=True)
            (OUT / "igemm_dev.json").write_text(json.dumps(results, indent=1))
    for key, (auto, best, tv) in sums.items():
        print(f"SUM {key}: auto {auto:8.1f}  best {best:8.1f}  torchvision {tv:8.1f}", flush=True)


if __name__ == "__main__":
    main()
