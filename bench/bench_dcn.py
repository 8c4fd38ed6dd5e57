"""Benchmark of the DCN forward on the GPU: our op (dcn_ext, implicit GEMM through kAuto)
against torchvision.ops.deform_conv2d on the same tensors, per CenterNet DCN layer.

    python3 bench/bench_dcn.py [--out DIR] [--dtypes fp16,fp32,bf16] [--batches 1,8]
                               [--network PATH/TO/PATCHED/CenterNet]

For the 16 DLA-34 DCN layers at 512x512 and 384x1280 and the 3 resdcn_18 layers at
512x512: GPU time per call (CUDA events around CUDA-graph replay of back-to-back calls,
median of repeats), the 16-layer sum, the ratio to torchvision, the fraction of the
roofline floor reached (floor = max(FLOPs / compute ceiling, minimal bytes / HBM
bandwidth), H100 SXM datasheet ceilings; the measured copy bandwidth and matmul rates are
reported next to them) and the relative L2 error against the float64 reference
(dcn_ext/reference.py; offsets with sigma = 2 px). Writes bench_dcn.json, bench_dcn.md and
bench_dcn.png (when matplotlib is installed) to --out and prints the markdown.

--network times the whole DLA-34 ddd forward (384x1280, fp16, batch 1) of a patched
CenterNet tree with our op, then with every DCN module's forward swapped for
torchvision's deform_conv2d.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
import types
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.dcn_layers import H100_SXM_CEILINGS, Layer, model_layers  # noqa: E402

DTYPE_NAMES = ("fp32", "fp16", "bf16")
SUITES = [("dla_34", (512, 512)), ("dla_34", (384, 1280)), ("resdcn_18", (512, 512))]
ACCURACY_LIMIT = {"fp32": 1e-5, "fp16": 2e-3, "bf16": 2e-3}


class NoGpuError(RuntimeError):
    """No CUDA GPU is visible: nothing can be measured."""


def torch_dtype(name):
    import torch
    return {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[name]


def gpu_time_us(fn, calls: int = 20, repeats: int = 15) -> float:
    """Median GPU time of one fn() call: CUDA events around replays of a graph of `calls` calls."""
    import torch
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(3):
            fn()
    torch.cuda.current_stream().wait_stream(side)
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    # Captured on the warm-up stream: dcn_ext keeps packed weights per (weight, stream), so
    # the graph holds the steady-state calls, as an application that warms up the same way.
    with torch.cuda.graph(graph, stream=side):
        for _ in range(calls):
            fn()
    graph.replay()
    torch.cuda.synchronize()
    samples = []
    for _ in range(repeats):
        start = torch.cuda.Event(enable_timing=True)
        end = torch.cuda.Event(enable_timing=True)
        start.record()
        graph.replay()
        end.record()
        end.synchronize()
        samples.append(start.elapsed_time(end) * 1000.0 / calls)
    return statistics.median(samples)


def make_inputs(layer: Layer, dtype, seed: int):
    """Random layer inputs: offsets ~ N(0, 2 px), mask in (0, 1), weights ~ 1/sqrt(K)."""
    import torch
    gen = torch.Generator(device="cuda").manual_seed(seed)
    n, h, w = layer.batch, layer.height, layer.width

    def randn(*shape):
        return torch.randn(*shape, device="cuda", generator=gen)

    x = randn(n, layer.cin, h, w).to(dtype)
    offset = (2.0 * randn(n, 18, h, w)).to(dtype)
    mask = torch.sigmoid(randn(n, 9, h, w)).to(dtype)
    weight = (randn(layer.cout, layer.cin, 3, 3) / (layer.cin * 9) ** 0.5).to(dtype)
    bias = randn(layer.cout).to(dtype)
    return x, offset, mask, weight, bias


def rel_l2(out, ref) -> float:
    import torch
    return (torch.linalg.vector_norm(out.double() - ref) / torch.linalg.vector_norm(ref)).item()


def measure_ceilings() -> dict:
    """Copy bandwidth (bytes read + written) and matmul rates of this GPU."""
    import torch
    big = torch.empty(512 * 1024 * 1024, dtype=torch.uint8, device="cuda")
    dst = torch.empty_like(big)
    copy_us = gpu_time_us(lambda: dst.copy_(big), calls=5, repeats=7)
    n = 8192
    a16 = torch.randn(n, n, device="cuda", dtype=torch.float16)
    mm16_us = gpu_time_us(lambda: a16 @ a16, calls=5, repeats=7)
    previous = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    a32 = torch.randn(4096, 4096, device="cuda")
    mm32_us = gpu_time_us(lambda: a32 @ a32, calls=5, repeats=7)
    torch.backends.cuda.matmul.allow_tf32 = previous
    return {"copy_tbps": 2 * big.numel() / copy_us / 1e6,
            "fp16_matmul_tflops": 2 * n ** 3 / mm16_us / 1e6,
            "fp32_matmul_tflops_no_tf32": 2 * 4096 ** 3 / mm32_us / 1e6}


def our_forward():
    """(callable(x, offset, mask, weight, bias) -> output through dcn_ext's kAuto, how)."""
    import dcn_ext.ops as ops  # the op as built by `python3 setup.py build_ext --inplace`
    if not ops.cuda_available():
        raise RuntimeError("dcn_ext was built without CUDA kernels: rebuild it on a GPU machine")
    op = ops.forward_with_algorithm_op()
    auto = ops.FORWARD_ALGORITHMS["auto"]
    simple = ops.FORWARD_ALGORITHMS["simple"]

    def run(x, offset, mask, weight, bias, algorithm=auto):
        return op(x, offset, mask, weight, bias, [1, 1], [1, 1], [1, 1], 1, 1, algorithm)

    return run, simple


def bench_layers(dtypes, batches, log) -> list:
    import torch
    from dcn_ext.reference import modulated_deform_conv2d_reference as reference
    try:
        import torchvision
        tv_conv = torchvision.ops.deform_conv2d
    except ImportError:
        tv_conv = None
        log("torchvision is not installed: no comparison column")
    ours, simple = our_forward()
    tv_dtypes = set(dtypes)
    rows = []
    seed = 0
    for model, hw in SUITES:
        for batch in batches:
            for layer in model_layers(model, hw, batch):
                for dname in dtypes:
                    seed += 1
                    dtype = torch_dtype(dname)
                    x, off, mask, w, b = make_inputs(layer, dtype, seed)
                    out = ours(x, off, mask, w, b)
                    ref = reference(x, off, mask, w, b, 1, 1, 1, 1, 1)
                    row = {"model": model, "input": f"{hw[0]}x{hw[1]}", "layer": layer.name,
                           "cin": layer.cin, "cout": layer.cout, "height": layer.height,
                           "width": layer.width, "batch": batch, "dtype": dname,
                           "rel_l2": rel_l2(out, ref),
                           "ours_us": gpu_time_us(lambda: ours(x, off, mask, w, b)),
                           "floor_us": layer.floor_us(dname, H100_SXM_CEILINGS),
                           "gflop": layer.gemm_flops() / 1e9,
                           "min_mbytes": layer.min_bytes(4 if dname == "fp32" else 2) / 1e6}
                    # Channels-last input (as in a network run in torch.channels_last): no
                    # NHWC copy; the output comes back channels-last.
                    x_cl = x.contiguous(memory_format=torch.channels_last)
                    out_cl = ours(x_cl, off, mask, w, b)
                    row["channels_last_rel_l2"] = rel_l2(out_cl, ref)
                    row["ours_channels_last_us"] = gpu_time_us(lambda: ours(x_cl, off, mask, w, b))
                    # trt_plugin's path: the plugin cannot keep packed weights between
                    # enqueues (its weight input may be refit under the same pointer), so
                    # each call packs them; dcn_ext does the same for an inference tensor
                    # (no version counter to tell that it is unchanged).
                    with torch.inference_mode():
                        w_per_call = w.clone()
                    out_plugin = ours(x_cl, off, mask, w_per_call, b)
                    row["plugin_path_same_output"] = bool(torch.equal(out_plugin, out_cl))
                    row["plugin_path_channels_last_us"] = gpu_time_us(
                        lambda: ours(x_cl, off, mask, w_per_call, b))
                    if dname == "fp16" and batch == 1:
                        row["simple_us"] = gpu_time_us(lambda: ours(x, off, mask, w, b, simple))
                    if tv_conv is not None and dname in tv_dtypes:
                        try:
                            tv_out = tv_conv(x, off, w, b, padding=1, mask=mask)
                        except NotImplementedError as error:  # e.g. no bf16 kernel
                            tv_dtypes.discard(dname)
                            log(f"torchvision has no {dname} deform_conv2d ({error}): no comparison")
                        else:
                            row["torchvision_rel_l2"] = rel_l2(tv_out, ref)
                            row["torchvision_us"] = gpu_time_us(
                                lambda: tv_conv(x, off, w, b, padding=1, mask=mask))
                    del ref
                    rows.append(row)
                    log(f"{model} {hw[0]}x{hw[1]} b{batch} {dname} {layer.name}: "
                        f"ours {row['ours_us']:.1f} us, channels-last {row['ours_channels_last_us']:.1f} us, torchvision {row.get('torchvision_us', float('nan')):.1f} us, "
                        f"rel L2 {row['rel_l2']:.2e}")
    return rows


def summarize(rows) -> list:
    """16-layer (or 3-layer) sums per (model, input, batch, dtype)."""
    groups = {}
    for r in rows:
        groups.setdefault((r["model"], r["input"], r["batch"], r["dtype"]), []).append(r)
    out = []
    for (model, inp, batch, dname), rs in groups.items():
        s = {"model": model, "input": inp, "batch": batch, "dtype": dname, "layers": len(rs),
             "ours_us": sum(r["ours_us"] for r in rs), "floor_us": sum(r["floor_us"] for r in rs),
             "ours_channels_last_us": sum(r["ours_channels_last_us"] for r in rs),
             "plugin_path_channels_last_us": sum(r["plugin_path_channels_last_us"] for r in rs),
             "plugin_path_same_output": all(r["plugin_path_same_output"] for r in rs),
             "worst_rel_l2": max(max(r["rel_l2"], r["channels_last_rel_l2"]) for r in rs)}
        if all("torchvision_us" in r for r in rs):
            s["torchvision_us"] = sum(r["torchvision_us"] for r in rs)
            s["layers_slower_than_torchvision"] = [r["layer"] for r in rs if r["ours_us"] > r["torchvision_us"]]
        s["ours_us_per_image"] = s["ours_us"] / batch
        s["ours_channels_last_us_per_image"] = s["ours_channels_last_us"] / batch
        out.append(s)
    return out


def bench_network(centernet: Path, log) -> dict:
    """Whole DLA-34 ddd forward, 384x1280 fp16 batch 1: our op vs torchvision's in every DCN."""
    import torch
    import torchvision
    import dcn_ext.ops  # noqa: F401  registers the op before the tree's copy of the package
    lib = centernet / "src" / "lib"
    if not (lib / "models" / "model.py").is_file():
        raise FileNotFoundError(f"{lib}/models/model.py: not a CenterNet tree")
    sys.path.insert(0, str(lib))
    # The patched tree's switch for not downloading ImageNet weights (random weights suffice).
    os.environ["CENTERNET_PATCH_NO_PRETRAINED"] = "1"
    from models.model import create_model
    heads = {"hm": 3, "dep": 1, "rot": 8, "dim": 3, "wh": 2, "reg": 2}
    torch.manual_seed(0)
    model = create_model("dla_34", heads, 256)
    dcns = [m for m in model.modules() if hasattr(m, "conv_offset_mask") and hasattr(m, "weight")]
    for m in dcns:  # non-zero offsets (the zero init would time a plain convolution)
        torch.nn.init.normal_(m.conv_offset_mask.weight, std=1e-2)
        torch.nn.init.normal_(m.conv_offset_mask.bias, std=1.0)
    model = model.cuda().half().eval()
    x_nchw = torch.randn(1, 3, 384, 1280, device="cuda", dtype=torch.float16)
    x_cl = x_nchw.contiguous(memory_format=torch.channels_last)
    layouts = {"nchw": (torch.contiguous_format, x_nchw), "channels_last": (torch.channels_last, x_cl)}

    def timed(layout):
        """(ms, heads) of the whole forward with the model and input in `layout`."""
        fmt, x = layouts[layout]
        model.to(memory_format=fmt)

        def forward():
            with torch.no_grad():
                return model(x)

        ms = gpu_time_us(forward, calls=5, repeats=15) / 1000
        with torch.no_grad():
            return ms, model(x)[-1]

    ours = {layout: timed(layout) for layout in layouts}

    def tv_forward(self, input):
        out = self.conv_offset_mask(input)
        k = self.offset_channels
        return torchvision.ops.deform_conv2d(input, out[:, :k], self.weight, self.bias,
                                             stride=self.stride, padding=self.padding,
                                             dilation=self.dilation, mask=torch.sigmoid(out[:, k:]))

    for m in dcns:
        m.forward = types.MethodType(tv_forward, m)
    tv = {layout: timed(layout) for layout in layouts}
    result = {"dcn_modules": len(dcns), "input": "384x1280", "dtype": "fp16", "batch": 1}
    for layout in layouts:
        diff = max((ours[layout][1][k].float() - tv[layout][1][k].float()).abs().max().item() for k in heads)
        result[layout] = {"ours_ms": ours[layout][0], "torchvision_ms": tv[layout][0],
                          "speedup": tv[layout][0] / ours[layout][0], "max_abs_diff_heads": diff}
        log(f"DLA-34 ddd forward ({layout}): ours {ours[layout][0]:.3f} ms, torchvision {tv[layout][0]:.3f} ms")
    return result


def ratio(numerator, denominator) -> str:
    return "" if numerator is None else f"{numerator / denominator:.2f}"


def markdown(report) -> str:
    lines = [f"# DCN forward benchmark on {report['device']}", "",
             f"torch {report['torch']}, torchvision {report.get('torchvision', 'absent')}. "
             "GPU time per call: CUDA events over CUDA-graph replay of 20 back-to-back calls, "
             "median of 15. Floor: max(GEMM FLOPs / tensor (fp16/bf16) or FFMA (fp32) peak + "
             "sampling FLOPs / FFMA peak, minimal bytes / HBM bandwidth) with the H100 SXM "
             f"datasheet ceilings {H100_SXM_CEILINGS}; measured on this GPU: "
             f"{ {k: round(v, 1) for k, v in report['measured_ceilings'].items()} }.", ""]
    lines += ["## Sums over the layers", "",
              "ours: NCHW input (the op makes an NHWC copy); ours CL: channels-last input "
              "(torch.channels_last, no copy), weights packed once and kept (dcn_ext); plugin CL: "
              "channels-last input with the weights packed by every call, as trt_plugin's enqueue "
              "runs (same output bits: yes/no). Ratios and floor fractions use the NCHW column.", "",
              "| model | input | batch | dtype | ours µs | ours CL µs | plugin CL µs | per image µs | torchvision µs | ratio tv/ours | floor µs | floor/ours | worst rel L2 | layers slower than tv |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for s in report["sums"]:
        tv = s.get("torchvision_us")
        lines.append(f"| {s['model']} | {s['input']} | {s['batch']} | {s['dtype']} | {s['ours_us']:.1f} | "
                     f"{s['ours_channels_last_us']:.1f} | {s['plugin_path_channels_last_us']:.1f} "
                     f"({'yes' if s['plugin_path_same_output'] else 'no'}) | "
                     f"{s['ours_us_per_image']:.1f} | {tv if tv is None else round(tv, 1)} | "
                     f"{ratio(tv, s['ours_us'])} | {s['floor_us']:.1f} | "
                     f"{s['floor_us'] / s['ours_us']:.2f} | {s['worst_rel_l2']:.1e} | "
                     f"{len(s.get('layers_slower_than_torchvision', []))} |")
    if report.get("network"):
        n = report["network"]
        lines += ["", "## Whole DLA-34 ddd forward (384x1280, fp16, batch 1)", "",
                  f"{n['dcn_modules']} DCN modules; model and input in each layout.", "",
                  "| layout | ours ms | torchvision DCN ms | tv/ours | max abs diff of the heads |",
                  "|---|---|---|---|---|"]
        for layout in ("nchw", "channels_last"):
            r = n[layout]
            lines.append(f"| {layout} | {r['ours_ms']:.3f} | {r['torchvision_ms']:.3f} | "
                         f"{r['speedup']:.2f} | {r['max_abs_diff_heads']:.3g} |")
    lines += ["", "## Per layer", "",
              "| model | input | b | dtype | layer | cin→cout | HxW | ours µs | ours CL µs | plugin CL µs | simple µs | torchvision µs | tv/ours | floor µs | floor/ours | rel L2 | tv rel L2 |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in report["layers"]:
        tv = r.get("torchvision_us")
        lines.append(f"| {r['model']} | {r['input']} | {r['batch']} | {r['dtype']} | {r['layer']} | "
                     f"{r['cin']}→{r['cout']} | {r['height']}x{r['width']} | {r['ours_us']:.1f} | "
                     f"{r['ours_channels_last_us']:.1f} | {r['plugin_path_channels_last_us']:.1f} | "
                     f"{r.get('simple_us', float('nan')):.1f} | {tv if tv is None else round(tv, 1)} | "
                     f"{ratio(tv, r['ours_us'])} | {r['floor_us']:.2f} | "
                     f"{r['floor_us'] / r['ours_us']:.2f} | {r['rel_l2']:.1e} | "
                     f"{r.get('torchvision_rel_l2', float('nan')):.1e} |")
    return "\n".join(lines) + "\n"


def chart(report, path: Path) -> bool:
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    sums = [s for s in report["sums"] if s["model"] == "dla_34"]
    labels = [f"{s['input']}\nb{s['batch']} {s['dtype']}" for s in sums]
    fig, ax = plt.subplots(figsize=(max(8, len(sums) * 0.9), 5))
    xs = range(len(sums))
    width = 0.2
    ax.bar([i - 1.5 * width for i in xs], [s["ours_us_per_image"] for s in sums], width, label="ours, NCHW input")
    ax.bar([i - 0.5 * width for i in xs], [s["ours_channels_last_us_per_image"] for s in sums], width,
           label="ours, channels-last input")
    ax.bar([i + 0.5 * width for i in xs], [s.get("torchvision_us", 0) / s["batch"] for s in sums], width,
           label="torchvision")
    ax.bar([i + 1.5 * width for i in xs], [s["floor_us"] / s["batch"] for s in sums], width, label="roofline floor")
    ax.set_xticks(list(xs))
    ax.set_xticklabels(labels, fontsize=7)
    ax.set_ylabel("µs per image, sum of the 16 DLA-34 DCN layers")
    ax.set_title(f"DCN forward on {report['device']}")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    return True


def run(out_dir: Path, dtypes, batches, network, log=print) -> dict:
    import torch
    if not torch.cuda.is_available():
        raise NoGpuError("no CUDA GPU is visible: bench-dcn measures GPU kernels and needs one")
    try:
        import torchvision
        tv_version = torchvision.__version__
    except ImportError:
        tv_version = None
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    report = {"device": torch.cuda.get_device_name(), "torch": torch.__version__,
              "torchvision": tv_version, "started": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
              "datasheet_ceilings": H100_SXM_CEILINGS, "measured_ceilings": measure_ceilings()}
    report["layers"] = bench_layers(dtypes, batches, log)
    report["sums"] = summarize(report["layers"])
    if network is not None:
        try:
            report["network"] = bench_network(Path(network), log)
        except Exception as error:  # report it, keep the layer results
            report["network_error"] = f"{type(error).__name__}: {error}"
            log(f"network benchmark failed: {report['network_error']}")
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "bench_dcn.json").write_text(json.dumps(report, indent=1), encoding="utf-8")
    (out_dir / "bench_dcn.md").write_text(markdown(report), encoding="utf-8")
    report["chart"] = chart(report, out_dir / "bench_dcn.png")
    return report


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("bench/results"))
    parser.add_argument("--dtypes", default="fp16,fp32,bf16")
    parser.add_argument("--batches", default="1,8")
    parser.add_argument("--network", default=None, help="a patched CenterNet tree")
    args = parser.parse_args(argv)
    dtypes = [d for d in args.dtypes.split(",") if d]
    bad = [d for d in dtypes if d not in DTYPE_NAMES]
    if bad:
        parser.error(f"--dtypes: got: {bad} expected: some of {list(DTYPE_NAMES)}")
    batches = [int(b) for b in args.batches.split(",") if b]
    try:
        report = run(args.out, dtypes, batches, args.network, log=lambda s: print(s, file=sys.stderr, flush=True))
    except NoGpuError as error:
        print(f"bench-dcn: {error}", file=sys.stderr)
        return 2
    print(markdown(report).split("## Per layer")[0])
    return 0


if __name__ == "__main__":
    sys.exit(main())
