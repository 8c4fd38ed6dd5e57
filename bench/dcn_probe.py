"""One profiled call of the DCN op per listed layer shape (fp16), for ncu on the GPU machine:

    ncu --profile-from-start off --section SpeedOfLight ... python3 -m bench.dcn_probe

Each shape is called twice first (packing its weights, warming caches), then once between
cudaProfilerStart/Stop."""
from __future__ import annotations

import os
import sys

import torch

from dcn_ext import ops

SHAPES = [tuple(int(v) for v in s.split("x")) for s in
          os.environ.get("PROBE_SHAPES", "64x64x128x128,256x64x32x32,512x256x16x16").split(",")]


def main() -> int:
    op = ops.forward_op()
    channels_last = os.environ.get("PROBE_CHANNELS_LAST") == "1"
    for cin, cout, h, w in SHAPES:
        g = torch.Generator(device="cuda").manual_seed(0)
        x = torch.randn(1, cin, h, w, device="cuda", generator=g).half()
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        off = (2 * torch.randn(1, 18, h, w, device="cuda", generator=g)).half()
        mask = torch.rand(1, 9, h, w, device="cuda", generator=g).half()
        wt = (torch.randn(cout, cin, 3, 3, device="cuda", generator=g) / (9 * cin) ** 0.5).half()
        b = torch.randn(cout, device="cuda", generator=g).half()
        for _ in range(2):
            op(x, off, mask, wt, b, [1, 1], [1, 1], [1, 1], 1, 1)
        torch.cuda.synchronize()
        torch.cuda.cudart().cudaProfilerStart()
        op(x, off, mask, wt, b, [1, 1], [1, 1], [1, 1], 1, 1)
        torch.cuda.synchronize()
        torch.cuda.cudart().cudaProfilerStop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
