"""The 16 DLA-34 DCN layers without the deformation, run by the vendor libraries (v40 in NOTES.md).

Issue 6's targets (fp16, batch 1, sum of the 16 layers: 80 us at 512x512, 120 us at
384x1280) are set against the roofline floor. This command measures what the vendor's own
kernels take for easier problems of the same shapes, in the same process as our op:

- cuDNN's dense 3x3 convolution (torch.nn.functional.conv2d, cudnn.benchmark on, so cuDNN
  picks its fastest algorithm per shape), channels-last and NCHW: the same layer with every
  offset zero and every mask one, i.e. no sampling;
- cuBLAS's GEMM of the DCN's own product, columns [pixels, 9 Cin] (already built, as an
  im2col buffer would hold them) times weights [9 Cin, Cout] plus bias: the tensor work of
  the layer with no gathering at all;
- one launch of a one-element kernel: what any layer pays before it does anything;

next to our op (channels-last, dcn_ext's kAuto) on the same shapes. Prints a markdown table
and writes dense_baselines.{json,md}:

    python3 -m bench.dense_baselines --out DIR

Each baseline's output is checked against float64 (and our op with zero offsets and unit
masks against cuDNN's convolution), so that every timed call is known to compute the layer.
It needs a CUDA GPU and dcn_ext built in place.
"""
from __future__ import annotations

import sys

from bench.bench_dcn import gpu_time_us, our_forward, rel_l2
from bench.dcn_layers import H100_SXM_CEILINGS
from bench.probe_cli import SUITES, dla34_fp16_cases, probe_main

TARGET_US = {"512x512": 80.0, "384x1280": 120.0}

COLUMNS = ["ours_channels_last_us", "cudnn_conv_channels_last_us", "cudnn_conv_nchw_us", "cublas_gemm_us",
           "one_launch_us", "floor_us"]
HEADINGS = ["our DCN, channels-last", "cuDNN dense conv, channels-last", "cuDNN dense conv, NCHW",
            "cuBLAS GEMM [HW, 9Cin]x[9Cin, Cout]", "one launch", "roofline floor"]


def im2col_rows(x):
    """[N, Cin, H, W] -> [N*H*W, Cin*9]: a 3x3, pad 1 convolution's columns, one row a pixel, in
    unfold's (c, ky, kx) order (the order of weight.view(Cout, Cin * 9))."""
    import torch.nn.functional as F
    return F.unfold(x, 3, padding=1).transpose(1, 2).reshape(-1, x.shape[1] * 9).contiguous()


def weight_columns(weight):
    """[Cout, Cin, 3, 3] -> [Cin*9, Cout], the GEMM's right operand."""
    return weight.reshape(weight.shape[0], -1).t().contiguous()


def measure(log=print) -> list:
    import torch
    import torch.nn.functional as F

    torch.backends.cudnn.benchmark = True
    ours, _ = our_forward()
    rows = []
    for input_hw, layer, x, off, mask, w, b, x_cl in dla34_fp16_cases(200):
        n, cin, height, width = x.shape
        cout = layer.cout
        w_cl = w.contiguous(memory_format=torch.channels_last)
        columns, w_t = im2col_rows(x), weight_columns(w)
        gemm_out = torch.empty(columns.shape[0], cout, dtype=x.dtype, device="cuda")
        scalar = torch.zeros(1, dtype=x.dtype, device="cuda")
        zero_offset = torch.zeros_like(off)
        unit_mask = torch.ones_like(mask)

        def gemm():
            torch.addmm(b, columns, w_t, out=gemm_out)

        expected = F.conv2d(x.double(), w.double(), b.double(), padding=1)
        gemm()
        row = {"input": input_hw, "layer": layer.name, "cin": cin, "cout": cout,
               "hw": f"{height}x{width}",
               "cudnn_conv_rel_l2": rel_l2(F.conv2d(x_cl, w_cl, b, padding=1), expected),
               "cublas_gemm_rel_l2": rel_l2(
                   gemm_out.view(n, height, width, cout).permute(0, 3, 1, 2), expected),
               "ours_zero_offset_rel_l2": rel_l2(ours(x_cl, zero_offset, unit_mask, w, b), expected),
               "ours_channels_last_us": gpu_time_us(lambda: ours(x_cl, off, mask, w, b)),
               "cudnn_conv_channels_last_us": gpu_time_us(lambda: F.conv2d(x_cl, w_cl, b, padding=1)),
               "cudnn_conv_nchw_us": gpu_time_us(lambda: F.conv2d(x, w, b, padding=1)),
               "cublas_gemm_us": gpu_time_us(gemm),
               "one_launch_us": gpu_time_us(scalar.zero_),
               "floor_us": layer.floor_us("fp16", H100_SXM_CEILINGS)}
        rows.append(row)
        log(f"{row['input']} {layer.name}: ours {row['ours_channels_last_us']:.1f} us, cuDNN conv "
            f"{row['cudnn_conv_channels_last_us']:.1f} us, cuBLAS GEMM {row['cublas_gemm_us']:.1f} us")
    return rows


def sums(rows) -> dict:
    """Per input size: the 16-layer sum of every column, and the worst relative L2 errors."""
    out = {}
    for hw in SUITES:
        name = f"{hw[0]}x{hw[1]}"
        picked = [r for r in rows if r["input"] == name]
        total = {c: sum(r[c] for r in picked) for c in COLUMNS}
        total["layers"] = len(picked)
        total["target_us"] = TARGET_US[name]
        for key in ("cudnn_conv_rel_l2", "cublas_gemm_rel_l2", "ours_zero_offset_rel_l2"):
            total["worst_" + key] = max(r[key] for r in picked)
        out[name] = total
    return out


def markdown(rows, totals) -> str:
    lines = ["| input | layer | cin→cout | HxW | " + " | ".join(h + " µs" for h in HEADINGS) + " |",
             "|---" * (4 + len(COLUMNS)) + "|"]
    for r in rows:
        lines.append(f"| {r['input']} | {r['layer']} | {r['cin']}→{r['cout']} | {r['hw']} | "
                     + " | ".join(f"{r[c]:.1f}" for c in COLUMNS) + " |")
    for name, total in totals.items():
        lines.append(f"| {name} | **sum of {total['layers']}** (target {total['target_us']:.0f}) | | | "
                     + " | ".join(f"**{total[c]:.1f}**" for c in COLUMNS) + " |")
    lines.append("")
    lines.append("Worst relative L2 against float64 (dense conv of the same tensors): "
                 + "; ".join(f"{name}: cuDNN {t['worst_cudnn_conv_rel_l2']:.1e}, cuBLAS "
                             f"{t['worst_cublas_gemm_rel_l2']:.1e}, our op with zero offsets "
                             f"{t['worst_ours_zero_offset_rel_l2']:.1e}" for name, t in totals.items()))
    return "\n".join(lines)


def produce(device):
    import torch
    rows = measure()
    totals = sums(rows)
    versions = {"torch": torch.__version__, "cuda": torch.version.cuda, "cudnn": torch.backends.cudnn.version()}
    body = (f"torch {versions['torch']}, CUDA {versions['cuda']}, cuDNN {versions['cudnn']}; GPU time per call "
            "by CUDA events over CUDA-graph replay, median of 15.\n\n" + markdown(rows, totals))
    heading = f"The 16 DLA-34 DCN layers without deformation, fp16, batch 1, on {device}"
    return {"versions": versions, "sums": totals, "rows": rows}, body, heading


def main(argv=None) -> int:
    return probe_main(argv, "dense_baselines", __doc__.splitlines()[0], produce)

if __name__ == "__main__":
    sys.exit(main())
