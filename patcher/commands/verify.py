"""`centernet-patch verify MODEL.onnx`: prove an export matches its PyTorch model."""
from __future__ import annotations

import argparse
from pathlib import Path

HELP = "compare an exported ONNX model with its PyTorch model, per head and detections"
DESCRIPTION = """\
Run the tree's PyTorch model (same checkpoint or seed, rebuilt from the model's metadata)
and the ONNX model on the same inputs, print per head the max absolute and relative
error against the tolerance, then decode both with the tree's own decoders and compare
the top-100 detections. A DCNv2 model runs in ONNX Runtime with its DCN nodes rewritten
to the equivalent standard DeformConv. Exit code 0 only when everything passes; a JSON
report is written (default: MODEL.verify.json).

Tolerance per element: |onnx - torch| <= atol + rtol * |torch|; fp32 atol 1e-3, rtol 1e-3;
fp16 atol 5e-2, rtol 2e-2.

Images: --image takes .npy (H x W x 3 uint8, BGR, as cv2.imread returns) or binary
.ppm files, preprocessed as upstream's detectors do; without --image, seeded random inputs."""


def configure(parser: argparse.ArgumentParser) -> None:
    from patcher.verify import RUNTIMES

    parser.add_argument("model", type=Path, metavar="MODEL.onnx",
                        help="the exported ONNX model to check against PyTorch")
    parser.add_argument("--repo", type=Path, default=None,
                        help="the patched CenterNet tree (default: the one named in the model)")
    weights = parser.add_mutually_exclusive_group()
    weights.add_argument("--checkpoint", type=Path, metavar="FILE",
                         help="the checkpoint the model was exported from (default: the "
                              "model's metadata)")
    weights.add_argument("--random-weights", action="store_true",
                         help="the model holds seeded random weights (give --seed)")
    parser.add_argument("--seed", type=int, default=None, help="seed of the random weights")
    parser.add_argument("--trust-checkpoint", action="store_true",
                        help="allow full unpickling of the checkpoint")
    parser.add_argument("--image", type=Path, action="append", default=[], metavar="FILE",
                        help="an input image (.npy BGR uint8 or .ppm); repeat for a batch")
    parser.add_argument("--runtime", default="onnxruntime", choices=RUNTIMES,
                        help="where the ONNX model runs (default onnxruntime, CPU)")
    parser.add_argument("--report", type=Path, default=None, help="JSON report path")


def execute(args: argparse.Namespace, ui) -> int:
    from patcher.errors import EXIT_CHECK_FAILED
    from patcher.verify import verify

    report = verify(args.model, tree=args.repo, checkpoint=args.checkpoint,
                    seed=args.seed, images=args.image, runtime=args.runtime,
                    report_path=args.report, trust_checkpoint=args.trust_checkpoint,
                    sink=ui.sink)
    ui.table(f"{args.model} vs PyTorch ({report.runtime}; inputs: {report.inputs})",
             ["head", "max abs error", "max rel error", "tolerance (atol, rtol)", "result"],
             [[h.name, f"{h.max_abs:.3g}", f"{h.max_rel:.3g}",
               f"{h.tolerance.atol:g}, {h.tolerance.rtol:g}", "pass" if h.passed else "FAIL"]
              for h in report.heads])
    d = report.detections
    ui.table("Top-100 detections (decoded by the tree's decoders)",
             ["matched", "only one side", "ties at the cut", "max abs error", "rows beyond tol", "result"],
             [[d.compared, d.unmatched, d.tie_band, f"{d.max_abs:.3g}", d.mismatched_rows,
               "pass" if d.passed else "FAIL"]])
    ui.info(f"report: {report.report_path}")
    if report.passed:
        ui.success("the ONNX model matches PyTorch")
        return 0
    ui.error("the ONNX model does not match PyTorch within tolerance")
    return EXIT_CHECK_FAILED
