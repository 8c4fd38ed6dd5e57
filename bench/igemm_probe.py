"""One call of the implicit-GEMM forward per listed shape, for profiling under ncu."""
import sys
import torch
sys.path.insert(0, __import__("os").path.dirname(__file__))
from igemm_dev import build, make_inputs  # noqa: E402

ext = build()
for (cin, cout, h, w, dt) in [(64, 64, 128, 128, torch.float16)]:
    x, off, mask, wt, b = make_inputs(1, cin, cout, h, w, dt)
    ws = torch.empty(ext.workspace_bytes(x, off, wt, 1, 1, 1, 1, -1, 0), dtype=torch.uint8, device="cuda")
    ext.forward(x, off, mask, wt, b, ws, 1, 1, 1, 1, -1, 0, None, None)
    torch.cuda.synchronize()
