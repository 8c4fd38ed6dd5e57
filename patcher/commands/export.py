"""`centernet-patch export TASK`: a patched tree's DCN model to ONNX."""
from __future__ import annotations

import argparse
from pathlib import Path

HELP = "export ctdet, ddd or multi_pose (DLA-34, ResNet-DCN) from a patched tree to ONNX"
DESCRIPTION = """\
Build TASK's model from the patched CenterNet tree's own code (its opts, heads and
create_model; no network access), load the checkpoint (safely: weights only) or seeded
random weights, and write the ONNX model plus a JSON file of its metadata beside it.
The DCN layers become DCNv2 nodes (for this project's TensorRT plugin) or standard
DeformConv nodes (opset 19+; ONNX Runtime and TensorRT's built-in plugin run them).

Defaults follow upstream: ddd -> dla_34 at 384x1280, written as ddd_3dop.onnx;
ctdet and multi_pose -> dla_34 at 512x512, written as TASK_ARCH.onnx.

Examples:
  centernet-patch export ddd --checkpoint ddd_3dop.pth
  centernet-patch export ctdet --arch resdcn_18 --checkpoint ctdet_coco_resdcn18.pth
  centernet-patch export ddd --random-weights --seed 1 --dcn-op DeformConv"""


def configure(parser: argparse.ArgumentParser) -> None:
    from patcher.export import DCN_ARCHS, DCN_OPS, EXPORTERS, OPSETS, PRECISIONS, TASKS

    parser.add_argument("task", metavar="TASK", help=f"one of: {', '.join(TASKS)}")
    parser.add_argument("--repo", type=Path, default=Path("CenterNet"),
                        help="the patched CenterNet tree (default: ./CenterNet)")
    weights = parser.add_mutually_exclusive_group(required=True)
    weights.add_argument("--checkpoint", type=Path, metavar="FILE",
                         help="upstream checkpoint (.pth) to export")
    weights.add_argument("--random-weights", action="store_true",
                         help="seeded random weights instead of a checkpoint (smoke tests)")
    parser.add_argument("--seed", type=int, default=None,
                        help="seed of the random weights (default: upstream's 317)")
    parser.add_argument("--trust-checkpoint", action="store_true",
                        help="allow full unpickling of the checkpoint (it can run code: only "
                             "for files you trust)")
    parser.add_argument("--out", type=Path, default=None,
                        help="output .onnx file or folder (default: the name above, here)")
    parser.add_argument("--arch", default=None, help=f"one of: {', '.join(DCN_ARCHS)} (default dla_34)")
    parser.add_argument("--input-size", default=None, metavar="HxW",
                        help="input height x width, multiples of 32 (default: the task's)")
    batch = parser.add_mutually_exclusive_group()
    batch.add_argument("--batch", type=int, default=1, help="fixed batch size (default 1)")
    batch.add_argument("--dynamic-batch", action="store_true", help="a dynamic batch axis")
    parser.add_argument("--dcn-op", default=DCN_OPS[0], choices=DCN_OPS,
                        help=f"ONNX op for the DCN layers (default {DCN_OPS[0]})")
    parser.add_argument("--precision", default="fp32", choices=PRECISIONS,
                        help="fp16 writes an fp16-typed model (what TensorRT 11 needs)")
    parser.add_argument("--opset", type=int, default=19,
                        choices=list(OPSETS), help="ONNX opset (default 19; DeformConv needs 19+)")
    parser.add_argument("--exporter", default="dynamo", choices=EXPORTERS,
                        help="torch.onnx exporter (default dynamo)")


def execute(args: argparse.Namespace, ui) -> int:
    from patcher.export import export, parse_input_size

    result = export(
        args.repo, args.task, arch=args.arch, checkpoint=args.checkpoint,
        random_weights=args.random_weights, seed=args.seed, out=args.out,
        input_size=parse_input_size(args.input_size) if args.input_size else None,
        batch=args.batch, dynamic_batch=args.dynamic_batch, dcn_op=args.dcn_op,
        precision=args.precision, opset=args.opset, exporter=args.exporter,
        trust_checkpoint=args.trust_checkpoint, sink=ui.sink)
    meta = result.metadata
    ui.table(f"Exported {result.onnx_path}", ["field", "value"], [
        ["task / arch", f"{meta['task']} / {meta['arch']}"],
        ["input", f"{meta['batch']} x 3 x {meta['input_size'][0]} x {meta['input_size'][1]} ({meta['precision']})"],
        ["outputs (heads)", ", ".join(f"{k} {v}" for k, v in meta["heads"].items())],
        ["DCN nodes", f"{result.dcn_node_count} x {meta['dcn_op']}"],
        ["opset / exporter", f"{meta['opset']} / {meta['exporter']}"],
        ["weights", meta["checkpoint_sha256"] and f"sha256 {meta['checkpoint_sha256']}"
         or f"random, seed {meta['weights']['seed']}"],
        ["metadata", str(result.metadata_path)],
        ["wall time", f"{result.wall_time_s:.1f} s"],
    ])
    ui.success(f"wrote {result.onnx_path}")
    return 0
