"""Export a CenterNet model to ONNX the recipe's way: ``python export_onnx_ddd.py --task ddd``.

Placed in CenterNet/src by ``centernet-patch apply``. Run from that folder:

    python export_onnx_ddd.py --task ddd --load_model ../models/ddd_3dop.pth   # -> ddd_3dop.onnx
    python export_onnx_ddd.py --task ddd                                       # random weights

It is a front end of ``centernet-patch export`` with upstream-style option names: the
model is built from this tree's own code, the checkpoint is loaded safely, and the same
metadata is written. It needs the centernet-patch package in this Python (it is, wherever
``centernet-patch apply`` ran); the export logic lives there once, not in every tree.
"""
import argparse
import os
import sys


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--task", default="ddd", help="ctdet | ddd | multi_pose (default ddd)")
    parser.add_argument("--load_model", default="", help="checkpoint (.pth); none: random weights")
    parser.add_argument("--arch", default=None, help="dla_34 | resdcn_18/34/50/101 (default dla_34)")
    parser.add_argument("--input_h", type=int, default=-1, help="input height (default: the task's)")
    parser.add_argument("--input_w", type=int, default=-1, help="input width (default: the task's)")
    parser.add_argument("--seed", type=int, default=317, help="seed of random weights (upstream's 317)")
    parser.add_argument("--output", default=None, help="output .onnx (default ddd_3dop.onnx for ddd)")
    parser.add_argument("--dcn_op", default=None, help="DCNv2 (default) | DeformConv")
    parser.add_argument("--opset", type=int, default=19)
    parser.add_argument("--exporter", default="dynamo", help="dynamo | torchscript")
    parser.add_argument("--precision", default="fp32", help="fp32 | fp16")
    parser.add_argument("--dynamic_batch", action="store_true")
    parser.add_argument("--trust_checkpoint", action="store_true",
                        help="allow full unpickling of --load_model (only for files you trust)")
    args = parser.parse_args(argv)
    try:
        from patcher.errors import CenterNetPatchError
        from patcher.export import TASKS, export
    except ImportError as error:
        sys.stderr.write("export_onnx_ddd.py needs the centernet-patch package in this Python "
                         "(%s); install it (pip install centernet-patch) or run "
                         "`centernet-patch export %s` instead.\n" % (error, args.task))
        return 3
    tree = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    size = None
    if args.input_h > 0 or args.input_w > 0:
        default_h, default_w = TASKS[args.task].input_size if args.task in TASKS else (-1, -1)
        size = (args.input_h if args.input_h > 0 else default_h,
                args.input_w if args.input_w > 0 else default_w)
    options = {"dcn_op": args.dcn_op} if args.dcn_op else {}
    try:
        result = export(tree, args.task, arch=args.arch,
                        checkpoint=args.load_model or None, random_weights=not args.load_model,
                        seed=args.seed, out=args.output, input_size=size,
                        dynamic_batch=args.dynamic_batch, opset=args.opset,
                        exporter=args.exporter, precision=args.precision,
                        trust_checkpoint=args.trust_checkpoint, **options)
    except CenterNetPatchError as error:
        sys.stderr.write("ERROR: %s\n" % error)
        if error.tip:
            sys.stderr.write("TIP: %s\n" % error.tip)
        return error.exit_code
    print("wrote %s (%d %s nodes, %.1f s); metadata: %s" % (
        result.onnx_path, result.dcn_node_count, result.metadata["dcn_op"],
        result.wall_time_s, result.metadata_path))
    return 0


if __name__ == "__main__":
    sys.exit(main())
