"""Export a patched CenterNet tree's DCN model to ONNX.

The silent core behind ``centernet-patch export`` and the recipe's ``export_onnx_ddd.py``.
The model is the tree's own (its opts, heads and ``create_model``), built in a separate
interpreter (see :mod:`patcher.tree_model` for why); this module validates the request,
runs that process, then stamps the metadata into the ONNX file and a JSON file beside it.
"""
from __future__ import annotations

import json
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Optional, Tuple

from dcn_ext.contract import CONTRACT

from .errors import CheckpointError, ExportError, TargetError, UsageError
from .onnx_tools import DEFORM_CONV_MIN_OPSET, DEFORM_CONV_OP, count_dcn_nodes, set_metadata
from .progress import NULL_SINK, ProgressSink
from .tree_model import DEFAULT_SEED, run_in_tree


@dataclass(frozen=True)
class TaskDefaults:
    input_size: Tuple[int, int]  # (height, width), upstream's dataset default
    arch: str


# Upstream's defaults (opts.py's per-task dataset info); exdet has no DCN model zoo entry
# and a different head structure, so it is not offered.
TASKS: Dict[str, TaskDefaults] = {
    "ctdet": TaskDefaults((512, 512), "dla_34"),
    "ddd": TaskDefaults((384, 1280), "dla_34"),
    "multi_pose": TaskDefaults((512, 512), "dla_34"),
}
# The archs whose networks contain DCN layers (pose_dla_dcn.py, resnet_dcn.py).
DCN_ARCHS = ("dla_34", "resdcn_18", "resdcn_34", "resdcn_50", "resdcn_101")
# Archs upstream has that have no DCN layer: named so the error can say why they are refused.
NON_DCN_ARCH_PREFIXES = ("res_", "dlav0_", "hourglass")
DCN_OPS = (CONTRACT.onnx_op_type, DEFORM_CONV_OP)
EXPORTERS = ("dynamo", "torchscript")
PRECISIONS = ("fp32", "fp16")
OPSETS = range(17, 21)
# Upstream's output stride: input sides must be multiples of 32 (DLA-34 and ResNet both
# downsample by 32 before upsampling back to stride 4).
INPUT_MULTIPLE = 32
# The model zoo's name for the DDD model (the recipe's output file).
RECIPE_OUTPUT = {("ddd", "dla_34"): "ddd_3dop.onnx"}


@dataclass
class ExportResult:
    onnx_path: Path
    metadata_path: Path
    metadata: Dict[str, Any]
    dcn_node_count: int
    wall_time_s: float
    log_path: Optional[Path] = field(default=None)


def default_output_name(task: str, arch: str, precision: str = "fp32") -> str:
    name = RECIPE_OUTPUT.get((task, arch), f"{task}_{arch}.onnx")
    return name if precision == "fp32" else name.replace(".onnx", f"_{precision}.onnx")


def validate_task_and_arch(task: str, arch: Optional[str]) -> str:
    """Returns the arch to use; raises UsageError listing the valid choices."""
    if task not in TASKS:
        reason = " (exdet has no DCN model and is not exported)" if task == "exdet" else ""
        raise UsageError(f"unknown task {task!r}{reason}: valid tasks are {', '.join(TASKS)}")
    arch = arch or TASKS[task].arch
    if arch not in DCN_ARCHS:
        reason = (" has no DCN layer (nothing for this tool to export)"
                  if arch.startswith(NON_DCN_ARCH_PREFIXES) else " is unknown")
        raise UsageError(f"arch {arch!r}{reason}: valid archs are {', '.join(DCN_ARCHS)}")
    return arch


def parse_input_size(text: str) -> Tuple[int, int]:
    """'384x1280' -> (384, 1280)."""
    parts = text.lower().split("x")
    try:
        height, width = (int(p) for p in parts)
    except ValueError:
        raise UsageError(f"input size {text!r}: expected HEIGHTxWIDTH, e.g. 384x1280") from None
    return height, width


def _validate_options(*, input_size: Tuple[int, int], batch: int, dcn_op: str, precision: str,
                      opset: int, exporter: str) -> None:
    height, width = input_size
    if height <= 0 or width <= 0 or height % INPUT_MULTIPLE or width % INPUT_MULTIPLE:
        raise UsageError(f"input size {height}x{width}: both sides must be positive multiples "
                         f"of {INPUT_MULTIPLE} (the network downsamples by {INPUT_MULTIPLE})")
    if batch < 1:
        raise UsageError(f"batch size {batch}: must be at least 1")
    if dcn_op not in DCN_OPS:
        raise UsageError(f"DCN op {dcn_op!r}: valid ops are {', '.join(DCN_OPS)}")
    if precision not in PRECISIONS:
        raise UsageError(f"precision {precision!r}: valid are {', '.join(PRECISIONS)}")
    if exporter not in EXPORTERS:
        raise UsageError(f"exporter {exporter!r}: valid are {', '.join(EXPORTERS)}")
    if opset not in OPSETS:
        raise UsageError(f"opset {opset}: supported opsets are {OPSETS.start}-{OPSETS.stop - 1}")
    if dcn_op == DEFORM_CONV_OP and opset < DEFORM_CONV_MIN_OPSET:
        raise UsageError(f"opset {opset} has no {DEFORM_CONV_OP}: it needs opset "
                         f"{DEFORM_CONV_MIN_OPSET} or later",
                         tip=f"pass --opset {DEFORM_CONV_MIN_OPSET} or --dcn-op {CONTRACT.onnx_op_type}")


def check_patched_tree(tree: Path) -> Path:
    """Raises TargetError unless ``tree`` is a CenterNet tree with the dcn package placed."""
    tree = Path(tree).resolve()
    if not (tree / "src" / "lib" / "opts.py").is_file():
        raise TargetError(f"{tree} is not a CenterNet tree (no src/lib/opts.py)",
                          tip="pass --repo with the path of your CenterNet clone")
    if not (tree / "src" / "lib" / "models" / "networks" / "dcn" / "__init__.py").is_file():
        raise TargetError(f"{tree} is not patched: its DCN layers still need the old DCNv2 "
                          f"extension (no src/lib/models/networks/dcn)",
                          tip=f"run `centernet-patch apply {tree}` and `centernet-patch build {tree}` first")
    return tree


def resolve_output(out: Optional[Path], default_name: str) -> Path:
    """The output file; raises UsageError when its folder cannot be written."""
    path = Path(out) if out is not None else Path.cwd() / default_name
    if path.is_dir():
        path = path / default_name
    path = path.resolve()
    if path.suffix != ".onnx":
        raise UsageError(f"output path {path}: expected a file name ending in .onnx")
    folder = path.parent
    if not folder.is_dir():
        raise UsageError(f"output path {path}: folder {folder} does not exist")
    try:
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".write-test-"):
            pass
    except OSError as error:
        raise UsageError(f"output path {path} is not writable ({error.strerror or error})") from error
    if path.exists() and not os.access(path, os.W_OK):
        raise UsageError(f"output path {path} is not writable (the file is read-only)")
    return path


def export(tree: Path, task: str, *, arch: Optional[str] = None, checkpoint: Optional[Path] = None,
           random_weights: bool = False, seed: Optional[int] = None, out: Optional[Path] = None,
           input_size: Optional[Tuple[int, int]] = None, batch: int = 1,
           dynamic_batch: bool = False, dcn_op: str = CONTRACT.onnx_op_type,
           precision: str = "fp32", opset: int = 19, exporter: str = "dynamo",
           trust_checkpoint: bool = False, sink: ProgressSink = NULL_SINK) -> ExportResult:
    """Exports ``task`` from the patched ``tree`` to ONNX; see the module docstring."""
    started = time.monotonic()
    arch = validate_task_and_arch(task, arch)
    input_size = tuple(input_size or TASKS[task].input_size)
    _validate_options(input_size=input_size, batch=batch, dcn_op=dcn_op, precision=precision,
                      opset=opset, exporter=exporter)
    if checkpoint is not None and random_weights:
        raise UsageError("give either a checkpoint or random weights, not both")
    if checkpoint is None and not random_weights:
        raise UsageError("no weights given: pass --checkpoint FILE, or --random-weights "
                         "(with --seed) for a smoke test")
    if checkpoint is not None:
        checkpoint = Path(checkpoint).resolve()
        if not checkpoint.is_file():
            raise CheckpointError(f"checkpoint {checkpoint}: no such file")
    seed = DEFAULT_SEED if seed is None else int(seed)
    tree = check_patched_tree(tree)
    onnx_path = resolve_output(out, default_output_name(task, arch, precision))
    log_path = onnx_path.with_suffix(".export.log")

    request = {
        "action": "export", "task": task, "arch": arch, "input_size": list(input_size),
        "checkpoint": str(checkpoint) if checkpoint else None, "trust_checkpoint": trust_checkpoint,
        "seed": seed, "batch": batch, "dynamic_batch": dynamic_batch, "dcn_op": dcn_op,
        "precision": precision, "opset": opset, "exporter": exporter,
    }
    import onnx

    with tempfile.TemporaryDirectory(prefix=".export-", dir=onnx_path.parent) as work:
        work_dir = Path(work)
        request["onnx_path"] = str(work_dir / onnx_path.name)
        with sink.step(f"Exporting {task} ({arch}, {input_size[0]}x{input_size[1]}, "
                       f"{dcn_op}, {exporter}, opset {opset}, {precision})"):
            try:
                result = run_in_tree(tree, request, work_dir=work_dir, log_path=log_path)
            except ExportError:
                raise  # the exporter's output stays in the log the message names
            except Exception:
                log_path.unlink(missing_ok=True)  # a user error (checkpoint, tree): no clutter
                raise
        with sink.step("Checking the ONNX model and writing metadata"):
            model = onnx.load(request["onnx_path"])
            counts = count_dcn_nodes(model)
            dcn_nodes = counts[dcn_op]
            if dcn_nodes == 0:
                raise ExportError(f"the exported graph has no {dcn_op} node (found {counts}); "
                                  f"the exporter decomposed the DCN layers",
                                  tip=f"see {log_path}")
            facts = result["facts"]
            metadata = {
                "producer": "centernet-patch", "task": task, "arch": arch,
                "heads": facts["heads"], "head_conv": facts["head_conv"],
                "input_size": list(input_size), "batch": "dynamic" if dynamic_batch else batch,
                "mean": facts["mean"], "std": facts["std"], "down_ratio": facts["down_ratio"],
                "num_classes": facts["num_classes"], "dcn_op": dcn_op, "dcn_node_count": dcn_nodes,
                "opset": opset, "exporter": exporter, "precision": precision,
                "torch_version": facts["torch_version"],
                "checkpoint_sha256": facts["checkpoint_sha256"],
                "weights": ({"kind": "checkpoint", "path": str(checkpoint),
                             "sha256": facts["checkpoint_sha256"]} if checkpoint
                            else {"kind": "random", "seed": seed}),
                "tree": str(tree),
            }
            set_metadata(model, metadata)
            try:
                onnx.checker.check_model(model, full_check=True)
            except onnx.checker.ValidationError as error:
                raise ExportError(f"the exported model fails onnx.checker: {error}") from error
            onnx.save(model, str(onnx_path))
    metadata_path = onnx_path.with_suffix(".json")
    metadata_path.write_text(json.dumps(metadata, indent=2) + "\n", encoding="utf-8")
    log_path.unlink(missing_ok=True)  # kept only when something failed
    return ExportResult(onnx_path=onnx_path, metadata_path=metadata_path, metadata=metadata,
                        dcn_node_count=dcn_nodes, wall_time_s=time.monotonic() - started)
