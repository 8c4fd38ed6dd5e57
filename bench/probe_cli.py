"""What the GPU probes under bench/ (factored_probe, dense_baselines) share: their cases and
their command line.

Each takes --out DIR, says plainly and exits 2 when no CUDA GPU is visible (writing
nothing), prints its markdown and writes DIR/<stem>.json and DIR/<stem>.md.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from bench.bench_dcn import make_inputs
from bench.dcn_layers import model_layers

SUITES = [(512, 512), (384, 1280)]


def dla34_fp16_cases(seed_base: int):
    """The 16 DLA-34 DCN layers at 512x512, then at 384x1280, batch 1, fp16 on the GPU: yields
    (input "HxW", layer, x, offset, mask, weight, bias, x channels-last)."""
    import torch
    # cuBLAS accumulating in full fp32, as our kernels do, wherever a probe calls it.
    torch.backends.cuda.matmul.allow_fp16_reduced_precision_reduction = False
    for hw in SUITES:
        for i, layer in enumerate(model_layers("dla_34", hw, 1)):
            x, offset, mask, weight, bias = make_inputs(layer, torch.float16, seed_base + i)
            yield (f"{hw[0]}x{hw[1]}", layer, x, offset, mask, weight, bias,
                   x.contiguous(memory_format=torch.channels_last))


def probe_main(argv, stem: str, description: str, produce) -> int:
    """produce(device name) -> (JSON payload, markdown body, markdown heading)."""
    parser = argparse.ArgumentParser(prog=f"python3 -m bench.{stem}", description=description)
    parser.add_argument("--out", type=Path, required=True, help=f"folder for {stem}.{{json,md}}")
    args = parser.parse_args(argv)
    import torch
    if not torch.cuda.is_available():
        print(f"{stem}: no CUDA GPU is visible: nothing to measure", file=sys.stderr)
        return 2
    device = torch.cuda.get_device_name()
    payload, body, heading = produce(device)
    print(body)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{stem}.json").write_text(json.dumps({"device": device, **payload}, indent=1))
    (args.out / f"{stem}.md").write_text(f"# {heading}\n\n{body}\n")
    return 0
