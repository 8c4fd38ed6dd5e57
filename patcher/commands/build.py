"""`centernet-patch build [TARGET]`: compile the DCN extension and TensorRT plugin in place."""
from __future__ import annotations

import argparse
from pathlib import Path

HELP = "build the DCN extension (and the TensorRT plugin) inside a patched CenterNet tree"
DESCRIPTION = """\
Run the recipe's build step in the patched tree (cd src/lib/models/networks/dcn &&
python setup.py build_ext --inplace), save its log, and check that the built op loads.
CUDA kernels are compiled when torch has CUDA and nvcc is found (--cuda auto), for the
visible GPU's architecture unless --cuda-arch says otherwise. The TensorRT plugin is built
next when TensorRT's headers are found (--tensorrt-root or TENSORRT_ROOT); without them
it is skipped with the reason, and the build still succeeds.

Examples:
  centernet-patch build CenterNet
  centernet-patch build CenterNet --cuda on --cuda-arch 9.0 --tensorrt-root /opt/TensorRT
  centernet-patch build CenterNet --cuda off"""


def configure(parser: argparse.ArgumentParser) -> None:
    from patcher.build import CUDA_MODES

    parser.add_argument("target", metavar="TARGET", type=Path, nargs="?",
                        default=Path("CenterNet"),
                        help="the patched CenterNet tree (default: ./CenterNet)")
    parser.add_argument("--cuda", default="auto", choices=CUDA_MODES,
                        help="CUDA kernels: auto (when torch and nvcc have CUDA), on (fail "
                             "without), off (CPU only); default auto")
    parser.add_argument("--cuda-arch", metavar="ARCH", default=None,
                        help="compute capabilities to compile for, e.g. 9.0a or '8.6;9.0a' "
                             "(9.0a: Hopper with the wgmma kernels; default: "
                             "TORCH_CUDA_ARCH_LIST, else the visible GPU's, 9.0a for an H100)")
    parser.add_argument("--tensorrt-root", metavar="DIR", type=Path, default=None,
                        help="TensorRT install or source tree with include/ (default: "
                             "TENSORRT_ROOT and the usual places)")


def execute(args: argparse.Namespace, ui) -> int:
    from patcher.build import build

    report = build(args.target, cuda=args.cuda, cuda_arch=args.cuda_arch,
                   tensorrt_root=args.tensorrt_root, sink=ui.sink)
    kernels = (f"CPU + CUDA ({report.cuda_arch or 'visible GPU'})" if report.cuda
               else "CPU only")
    ui.table(f"Built in {report.tree}", ["part", "result"], [
        ["DCN extension", str(report.extension_path)],
        ["kernels", kernels],
        ["build time", f"{report.wall_time_s:.1f} s"],
        ["build log", str(report.log_path)],
        ["TensorRT plugin", str(report.plugin_library) if report.plugin_library
         else f"skipped: {report.plugin_skipped}"],
    ])
    if report.plugin_skipped:
        ui.warn(report.plugin_skipped)
    ui.success(f"built the DCN extension in {report.dcn_dir}")
    return 0
