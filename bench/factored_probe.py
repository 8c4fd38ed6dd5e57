"""Probe of a different DCN design: a dense GEMM, then a bilinear sampler (v36 in NOTES.md).

Bilinear sampling is linear in the image, so a modulated DCN can run in the other order:

    out[p] = bias + sum_t m_t(p) * bilinear(y_t, p + t + offset_t(p)),   y_t = W_t x

with y_t = W_t x computed at every input pixel by one dense GEMM (x as [pixels, Cin] times
[Cin, 9 Cout]: no gathers and no sampling chain inside the GEMM), and the sampler gathering
Cout channels of y instead of Cin of x. Zero padding is the same in both orders (y is zero
wherever x is). This command measures that design on the 16 DLA-34 layers (fp16, batch 1,
channels-last), with cuBLAS (torch.matmul) for the GEMM and a sampler compiled here, next
to dcn_ext's op on the same tensors, and prints a table and writes JSON:

    python3 -m bench.factored_probe --out DIR

It needs a CUDA GPU, nvcc and dcn_ext built in place (for the comparison column).
"""
from __future__ import annotations

import sys

from bench.bench_dcn import gpu_time_us, our_forward, rel_l2
from bench.probe_cli import SUITES, dla34_fp16_cases, probe_main


# One thread: one output pixel x 8 channels. All 27 offsets and masks first, then every
# tap's corner weights and addresses, then the 36 corner loads in three groups of 12 (a
# version that loaded one tap at a time was 5-8 % slower), each tap blended in half2 and
# accumulated in fp32.
SAMPLER = r"""
#include <cuda_fp16.h>
#include <torch/extension.h>
#include <ATen/cuda/CUDAContext.h>

// y: [N*H*W][9][Cout] (the GEMM's output, tap-major per pixel); offset [N][18][H][W] and
// mask [N][9][H][W] as the op takes them; out: [N*H*W][Cout] (channels-last).
__global__ void __launch_bounds__(128) sample_kernel(const __half* __restrict__ y, const __half* __restrict__ off,
    const __half* __restrict__ msk, const __half* __restrict__ bias, __half* __restrict__ out,
    int total, int vpp, int H, int W, int Cout) {
  int gid = blockIdx.x * blockDim.x + threadIdx.x;
  if (gid >= total) return;
  const int v = gid % vpp, pix = gid / vpp;
  const int HW = H * W;
  const int n = pix / HW, hw = pix - n * HW, h = hw / W, w = hw - h * W;
  const __half* offp = off + (size_t)n * 18 * HW + hw;
  const __half* mp = msk + (size_t)n * 9 * HW + hw;
  const int row = 9 * Cout;
  const __half* ybase = y + (size_t)n * HW * row + v * 8;
  __half o[27];
#pragma unroll
  for (int t = 0; t < 18; ++t) o[t] = offp[t * HW];
#pragma unroll
  for (int t = 0; t < 9; ++t) o[18 + t] = mp[t * HW];
  float cw[36];
  int idx[36];
#pragma unroll
  for (int t = 0; t < 9; ++t) {
    const float dy = __half2float(o[2 * t]), dx = __half2float(o[2 * t + 1]);
    const float m = __half2float(o[18 + t]);
    const float py = (float)(h - 1 + t / 3) + dy, px = (float)(w - 1 + t % 3) + dx;
    const bool inside = py > -1.f && py < (float)H && px > -1.f && px < (float)W;
    const float fy0 = floorf(inside ? py : 0.f), fx0 = floorf(inside ? px : 0.f);
    const int y0 = (int)fy0, x0 = (int)fx0;
    const float fy = (inside ? py : 0.f) - fy0, fx = (inside ? px : 0.f) - fx0;
    const float mm = inside ? m : 0.f;
    cw[4 * t + 0] = (1.f - fy) * (1.f - fx) * mm;
    cw[4 * t + 1] = (1.f - fy) * fx * mm;
    cw[4 * t + 2] = fy * (1.f - fx) * mm;
    cw[4 * t + 3] = fy * fx * mm;
#pragma unroll
    for (int k = 0; k < 4; ++k) {
      const int cy = y0 + k / 2, cx = x0 + k % 2;
      const bool ok = cy >= 0 && cy < H && cx >= 0 && cx < W;
      if (!ok) cw[4 * t + k] = 0.f;
      idx[4 * t + k] = (ok ? cy * W + cx : hw) * row + t * Cout;
    }
  }
  float acc[8];
#pragma unroll
  for (int i = 0; i < 8; ++i) acc[i] = 0.f;
#pragma unroll
  for (int g = 0; g < 3; ++g) {
    uint4 c[12];
#pragma unroll
    for (int k = 0; k < 12; ++k) c[k] = __ldg(reinterpret_cast<const uint4*>(ybase + idx[12 * g + k]));
#pragma unroll
    for (int tt = 0; tt < 3; ++tt) {
      __half2 r[4];
#pragma unroll
      for (int k = 0; k < 4; ++k) {
        const __half2 wk = __float2half2_rn(cw[12 * g + 4 * tt + k]);
        const __half2* ck = reinterpret_cast<const __half2*>(&c[4 * tt + k]);
#pragma unroll
        for (int e = 0; e < 4; ++e) r[e] = k == 0 ? __hmul2(wk, ck[e]) : __hfma2(wk, ck[e], r[e]);
      }
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const float2 f = __half22float2(r[e]);
        acc[2 * e] += f.x;
        acc[2 * e + 1] += f.y;
      }
    }
  }
  uint4 ov;
  __half2* oh = reinterpret_cast<__half2*>(&ov);
  const __half2* bh = reinterpret_cast<const __half2*>(bias + v * 8);
#pragma unroll
  for (int e = 0; e < 4; ++e) {
    const float2 b = __half22float2(bh[e]);
    oh[e] = __floats2half2_rn(acc[2 * e] + b.x, acc[2 * e + 1] + b.y);
  }
  *reinterpret_cast<uint4*>(out + (size_t)pix * Cout + v * 8) = ov;
}

__global__ void empty_kernel() {}
torch::Tensor empty_launch(torch::Tensor t) { empty_kernel<<<132, 128, 0, at::cuda::getCurrentCUDAStream()>>>(); return t; }

torch::Tensor sample(torch::Tensor y, torch::Tensor off, torch::Tensor msk, torch::Tensor bias, torch::Tensor out,
                     int64_t H, int64_t W, int64_t Cout) {
  const int vpp = Cout / 8;
  const int total = out.numel() / 8;
  const int threads = 128, blocks = (total + threads - 1) / threads;
  sample_kernel<<<blocks, threads, 0, at::cuda::getCurrentCUDAStream()>>>(reinterpret_cast<const __half*>(y.data_ptr()),
        reinterpret_cast<const __half*>(off.data_ptr()), reinterpret_cast<const __half*>(msk.data_ptr()),
        reinterpret_cast<const __half*>(bias.data_ptr()), reinterpret_cast<__half*>(out.data_ptr()),
        total, vpp, (int)H, (int)W, (int)Cout);
  return out;
}
"""

DECLARATIONS = ("torch::Tensor empty_launch(torch::Tensor t); "
                "torch::Tensor sample(torch::Tensor y, torch::Tensor off, torch::Tensor msk, torch::Tensor bias, "
                "torch::Tensor out, int64_t H, int64_t W, int64_t Cout);")


def build_sampler():
    from torch.utils.cpp_extension import load_inline
    return load_inline("dcn_factored_probe", DECLARATIONS, cuda_sources=SAMPLER,
                       functions=["sample", "empty_launch"],
                       extra_cuda_cflags=["-O3", "-gencode=arch=compute_90a,code=sm_90a"])


def measure(log=print) -> list:
    import torch
    from dcn_ext.reference import modulated_deform_conv2d_reference as reference
    import dcn_ext.ops as ops

    ext = build_sampler()
    ours, _ = our_forward()
    op, auto = ops.forward_with_algorithm_op(), ops.FORWARD_ALGORITHMS["auto"]
    rows = []
    for input_hw, layer, x, off, mask, w, b, x_cl in dla34_fp16_cases(100):
        n, cin, height, width = x.shape
        cout = layer.cout
        pixels = x_cl.permute(0, 2, 3, 1).reshape(-1, cin)  # a view: [N*H*W, Cin]
        w_taps = w.permute(1, 2, 3, 0).reshape(cin, 9 * cout).contiguous()  # [Cin, tap*Cout + co]
        y = torch.empty(n * height * width, 9 * cout, dtype=x.dtype, device="cuda")
        out = torch.empty(n, cout, height, width, dtype=x.dtype, device="cuda",
                          memory_format=torch.channels_last)

        def gemm():
            torch.matmul(pixels, w_taps, out=y)

        def sample():
            ext.sample(y, off, mask, b, out, height, width, cout)

        # The GEMM by our own kernel: a 1x1 DCN with zero offsets and 9 Cout outputs
        # (its channels-last output is y's layout).
        w_1x1 = w_taps.t().contiguous().view(9 * cout, cin, 1, 1)
        zero_offset = torch.zeros(n, 2, height, width, dtype=x.dtype, device="cuda")
        unit_mask = torch.ones(n, 1, height, width, dtype=x.dtype, device="cuda")
        zero_bias = torch.zeros(9 * cout, dtype=x.dtype, device="cuda")

        def igemm_1x1():
            return op(x_cl, zero_offset, unit_mask, w_1x1, zero_bias, [1, 1], [0, 0], [1, 1], 1, 1, auto)

        gemm()
        sample()
        ref = reference(x, off, mask, w, b, 1, 1, 1, 1, 1)
        y_ours = igemm_1x1().permute(0, 2, 3, 1).reshape(-1, 9 * cout)
        row = {"input": input_hw, "layer": layer.name, "cin": cin, "cout": cout,
               "hw": f"{height}x{width}", "rel_l2": rel_l2(out, ref),
               "igemm_1x1_vs_cublas": rel_l2(y_ours, y.double()),
               "empty_launch_us": gpu_time_us(lambda: ext.empty_launch(y)),
               "cublas_gemm_us": gpu_time_us(gemm),
               "igemm_1x1_us": gpu_time_us(igemm_1x1),
               "sampler_us": gpu_time_us(sample),
               "gemm_then_sample_us": gpu_time_us(lambda: (gemm(), sample())),
               "ours_channels_last_us": gpu_time_us(lambda: ours(x_cl, off, mask, w, b))}
        rows.append(row)
        log(f"{row['input']} {layer.name}: gemm+sample {row['gemm_then_sample_us']:.1f} us, "
            f"ours {row['ours_channels_last_us']:.1f} us")
    return rows


COLUMNS = ["cublas_gemm_us", "igemm_1x1_us", "sampler_us", "gemm_then_sample_us", "ours_channels_last_us",
           "empty_launch_us"]


def markdown(rows) -> str:
    lines = ["| input | layer | cin→cout | HxW | " + " | ".join(c[:-3].replace("_", " ") + " µs" for c in COLUMNS)
             + " | rel L2 |", "|---" * (5 + len(COLUMNS)) + "|"]
    for r in rows:
        lines.append(f"| {r['input']} | {r['layer']} | {r['cin']}→{r['cout']} | {r['hw']} | "
                     + " | ".join(f"{r[c]:.1f}" for c in COLUMNS) + f" | {r['rel_l2']:.1e} |")
    for hw in SUITES:
        name = f"{hw[0]}x{hw[1]}"
        picked = [r for r in rows if r["input"] == name]
        lines.append(f"| {name} | sum of {len(picked)} | | | "
                     + " | ".join(f"{sum(r[c] for r in picked):.1f}" for c in COLUMNS) + " | |")
    return "\n".join(lines)


def main(argv=None) -> int:
    def produce(device):
        rows = measure()
        return {"rows": rows}, markdown(rows), f"GEMM-then-sample probe on {device}"

    return probe_main(argv, "factored_probe", __doc__.splitlines()[0], produce)

if __name__ == "__main__":
    sys.exit(main())
