"""Prove an exported ONNX model computes what the PyTorch model computes.

Both run on the same inputs: the tree's own PyTorch model (rebuilt from the ONNX file's
metadata with the same checkpoint or seed, in a fresh interpreter: see
:mod:`patcher.tree_model`) and the ONNX file in a runtime. Each head is compared element
by element; then both sides are decoded with the tree's own decoders and the top-k
detections are matched by (class, heatmap position).

ONNX Runtime has no DCNv2 op. A DCNv2 model is run with its DCN nodes rewritten to the
standard DeformConv (same tensors and weights, see :func:`patcher.onnx_tools
.dcnv2_to_deform_conv`), which ONNX Runtime implements: the deployed graph, not a
re-export.
"""
from __future__ import annotations

import json
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from dcn_ext.contract import CONTRACT

from .errors import CheckpointError, UsageError, VerificationFailed
from .export import check_patched_tree
from .onnx_tools import count_dcn_nodes, dcnv2_to_deform_conv, read_metadata
from .progress import NULL_SINK, ProgressSink
from .tree_model import run_in_tree

RUNTIMES = ("onnxruntime", "tensorrt")
TOP_K = 100  # upstream's default --K: the detections a detector keeps per image
RANDOM_BATCH_FOR_DYNAMIC = 2  # a dynamic-batch model is checked with more than one image


@dataclass(frozen=True)
class Tolerance:
    """An element passes when |onnx - torch| <= atol + rtol * |torch| (numpy's allclose)."""

    atol: float
    rtol: float


# fp32: both sides compute in float32 with different summation orders; 1e-3 absolute is
# the acceptance bound for the heatmap logits. fp16: half precision has a 2^-11 step, and
# errors grow through ~40 layers, so the bound is an order of magnitude wider.
DEFAULT_TOLERANCES: Dict[str, Tolerance] = {
    "fp32": Tolerance(atol=1e-3, rtol=1e-3),
    "fp16": Tolerance(atol=5e-2, rtol=2e-2),
}


@dataclass
class HeadResult:
    name: str
    max_abs: float
    max_rel: float  # max of |onnx - torch| / (|torch| + atol)
    tolerance: Tolerance
    passed: bool


@dataclass
class DetectionComparison:
    compared: int  # detections matched by (class, position) on both sides
    unmatched: int  # detections on one side only, outside the tie band at the k-th score
    tie_band: int  # detections on one side only whose score ties the k-th score
    max_abs: float  # over every field of the matched detections
    mismatched_rows: int  # matched detections with a field beyond tolerance
    passed: bool


@dataclass
class VerifyReport:
    heads: List[HeadResult]
    detections: Optional[DetectionComparison]
    detections_match: bool
    passed: bool
    report_path: Optional[Path]
    onnx_path: Path
    runtime: str
    inputs: str
    torch_device: str = "cpu"
    rewritten_dcn_nodes: int = 0
    metadata: Dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> Dict[str, Any]:
        data = asdict(self)
        data["report_path"] = str(self.report_path) if self.report_path else None
        data["onnx_path"] = str(self.onnx_path)
        return data


# ---------------------------------------------------------------- inputs

def read_image(path: Path) -> np.ndarray:
    """An image as cv2.imread returns it (H x W x 3, uint8, BGR).

    OpenCV and Pillow are not dependencies of this tool, so two dependency-free formats
    are read: ``.npy`` (an H x W x 3 uint8 array in BGR order, e.g. ``np.save(f,
    cv2.imread(img))``) and binary PPM (``P6``, 8-bit, RGB on disk; any converter writes it).
    """
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"image {path}: no such file")
    suffix = path.suffix.lower()
    if suffix == ".npy":
        image = np.load(path, allow_pickle=False)
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise UsageError(f"image {path}: expected an H x W x 3 uint8 array (BGR); "
                             f"got: shape {image.shape}, dtype {image.dtype}")
        return image
    if suffix == ".ppm":
        return _read_ppm(path)
    raise UsageError(f"image {path}: unsupported format {suffix!r}; expected .npy "
                     f"(H x W x 3 uint8 BGR) or .ppm (binary P6)")


def _read_ppm(path: Path) -> np.ndarray:
    data = path.read_bytes()
    fields: List[bytes] = []
    position = 0
    while len(fields) < 4:  # magic, width, height, maxval; '#' starts a comment line
        while position < len(data) and data[position:position + 1].isspace():
            position += 1
        if data[position:position + 1] == b"#":
            position = data.find(b"\n", position) + 1 or len(data)
            continue
        start = position
        while position < len(data) and not data[position:position + 1].isspace():
            position += 1
        if start == position:
            break
        fields.append(data[start:position])
    position += 1  # the single whitespace byte before the pixels
    try:
        magic, width, height, maxval = fields[0], int(fields[1]), int(fields[2]), int(fields[3])
    except (IndexError, ValueError):
        raise UsageError(f"image {path}: not a binary PPM (bad header)") from None
    if magic != b"P6" or maxval != 255:
        raise UsageError(f"image {path}: expected a binary 8-bit PPM (P6, maxval 255); "
                         f"got: {magic.decode(errors='replace')}, maxval {maxval}")
    pixels = np.frombuffer(data, dtype=np.uint8, count=width * height * 3, offset=position) \
        if len(data) - position >= width * height * 3 else None
    if pixels is None:
        raise UsageError(f"image {path}: truncated ({len(data) - position} pixel bytes, "
                         f"expected {width * height * 3})")
    return pixels.reshape(height, width, 3)[:, :, ::-1].copy()  # RGB -> BGR (cv2's order)


def preprocess(image: np.ndarray, *, task: str, input_size: Tuple[int, int],
               mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
    """Upstream's test-time preprocessing (fixed input size, scale 1): 3 x H x W float32.

    The detectors map the image centre to the input centre with a uniform scale of
    input_width / s, where s is the image's longer side (ctdet, multi_pose) or its width
    (ddd), fill the rest with 0, then normalise with the dataset's mean and std. The warp
    here is exact bilinear; OpenCV's warpAffine uses 1/32-pixel fixed point, so pixels
    may differ from upstream's by a rounding step (both runtimes get the same tensor).
    """
    height, width = image.shape[:2]
    input_h, input_w = input_size
    side = float(width) if task == "ddd" else float(max(height, width))
    scale = input_w / side
    # destination pixel (u, v) comes from source (x, y) = ((u - input_w/2) / scale + width/2, ...)
    u = np.arange(input_w, dtype=np.float64)
    v = np.arange(input_h, dtype=np.float64)
    src_x = (u - input_w / 2.0) / scale + width / 2.0
    src_y = (v - input_h / 2.0) / scale + height / 2.0
    warped = _bilinear(image.astype(np.float64), src_y[:, None], src_x[None, :])
    normalised = (warped / 255.0 - np.asarray(mean)) / np.asarray(std)
    return normalised.transpose(2, 0, 1).astype(np.float32)


def _bilinear(image: np.ndarray, y: np.ndarray, x: np.ndarray) -> np.ndarray:
    height, width = image.shape[:2]
    y, x = np.broadcast_arrays(y, x)
    y0 = np.floor(y).astype(np.int64)
    x0 = np.floor(x).astype(np.int64)
    fy = (y - y0)[..., None]
    fx = (x - x0)[..., None]
    result = np.zeros(y.shape + (image.shape[2],), dtype=np.float64)
    for dy, dx, weight in ((0, 0, (1 - fy) * (1 - fx)), (0, 1, (1 - fy) * fx),
                           (1, 0, fy * (1 - fx)), (1, 1, fy * fx)):
        yy, xx = y0 + dy, x0 + dx
        inside = (yy >= 0) & (yy < height) & (xx >= 0) & (xx < width)
        values = image[np.clip(yy, 0, height - 1), np.clip(xx, 0, width - 1)]
        result += np.where(inside[..., None], values * weight, 0.0)
    return result


def random_inputs(seed: int, batch: int, input_size: Tuple[int, int]) -> np.ndarray:
    """Seeded standard-normal inputs (what normalised images look like statistically)."""
    generator = np.random.default_rng(seed)
    return generator.standard_normal((batch, 3, *input_size)).astype(np.float32)


# ---------------------------------------------------------------- runtimes

def run_onnxruntime(model: Any, inputs: np.ndarray, output_names: Sequence[str]) -> Dict[str, np.ndarray]:
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3  # errors only: ORT's warnings are about its own fusions
    session = onnxruntime.InferenceSession(model.SerializeToString(), options,
                                           providers=["CPUExecutionProvider"])
    outputs = session.run(list(output_names), {"input": inputs})
    return dict(zip(output_names, outputs))


def run_tensorrt(onnx_path: Path, inputs: np.ndarray, work_dir: Path,
                 sink: ProgressSink) -> Dict[str, np.ndarray]:
    """Builds an engine from the deployed ONNX file (DCN plugin loaded) and runs it once."""
    from . import tensorrt as trt_support

    trt_support.require("verify --runtime tensorrt")  # says plainly when TensorRT is absent
    with sink.step("Building the TensorRT engine"):
        built = trt_support.build_engine(onnx_path, work_dir / (onnx_path.stem + ".engine"),
                                         sink=sink)
    with sink.step("Running the TensorRT engine"):
        outputs = trt_support.run_engine(built.engine_path, {"input": inputs})
    return {name: np.asarray(value) for name, value in outputs.items()}


# ---------------------------------------------------------------- comparisons

def compare_head(name: str, onnx_value: np.ndarray, torch_value: np.ndarray,
                 tolerance: Tolerance) -> HeadResult:
    if onnx_value.shape != torch_value.shape:
        raise VerificationFailed(f"head {name}: ONNX output shape {onnx_value.shape} differs "
                                 f"from PyTorch's {torch_value.shape}")
    reference = torch_value.astype(np.float64)
    error = np.abs(onnx_value.astype(np.float64) - reference)
    finite = np.isfinite(error).all()
    max_abs = float(error.max()) if error.size else 0.0
    max_rel = float((error / (np.abs(reference) + tolerance.atol)).max()) if error.size else 0.0
    passed = bool(finite and (error <= tolerance.atol + tolerance.rtol * np.abs(reference)).all())
    return HeadResult(name=name, max_abs=max_abs, max_rel=max_rel, tolerance=tolerance,
                      passed=passed)


def compare_detections(torch_side: Mapping[str, np.ndarray], onnx_side: Mapping[str, np.ndarray],
                       tolerance: Tolerance) -> DetectionComparison:
    """Matches each side's top-k by (class, heatmap position) and compares the rows.

    A detection present on one side only is accepted only when its score ties the other
    side's k-th score within tolerance (which of several equal scores makes the cut is
    arbitrary: suppressed peaks are exactly 0, and many tie there). Rank order is not
    compared: near-equal scores may swap ranks; their scores are compared instead.
    """
    compared = unmatched = tie_band = mismatched = 0
    max_abs = 0.0
    batch = torch_side["scores"].shape[0]
    for item in range(batch):
        sides = []
        for side in (torch_side, onnx_side):
            keys = list(zip(side["classes"][item].tolist(), side["indices"][item].tolist()))
            sides.append((dict(zip(keys, range(len(keys)))), side["scores"][item],
                          side["detections"][item]))
        (t_rank, t_scores, t_rows), (o_rank, o_scores, o_rows) = sides
        for ranks, scores, other_ranks, other_scores in ((t_rank, t_scores, o_rank, o_scores),
                                                          (o_rank, o_scores, t_rank, t_scores)):
            for key, rank in ranks.items():
                if key in other_ranks:
                    continue
                if abs(float(scores[rank]) - float(other_scores[-1])) <= tolerance.atol:
                    tie_band += 1
                else:
                    unmatched += 1
        for key, t_index in t_rank.items():
            o_index = o_rank.get(key)
            if o_index is None:
                continue
            compared += 1
            reference = t_rows[t_index].astype(np.float64)
            difference = np.abs(o_rows[o_index].astype(np.float64) - reference)
            max_abs = max(max_abs, float(difference.max()))
            if not (difference <= tolerance.atol + tolerance.rtol * np.abs(reference)).all():
                mismatched += 1
    return DetectionComparison(compared=compared, unmatched=unmatched, tie_band=tie_band,
                               max_abs=max_abs, mismatched_rows=mismatched,
                               passed=unmatched == 0 and mismatched == 0 and compared > 0)


# ---------------------------------------------------------------- the core

def _weights_for(metadata: Dict[str, Any], checkpoint: Optional[Path], seed: Optional[int],
                 onnx_path: Path) -> Tuple[Optional[Path], int]:
    """The checkpoint (or None) and seed that rebuild the exported weights."""
    weights = metadata.get("weights") or {}
    exported_sha = metadata.get("checkpoint_sha256")
    if checkpoint is not None:
        from .checkpoint import file_sha256

        checkpoint = Path(checkpoint).resolve()
        if not checkpoint.is_file():
            raise CheckpointError(f"checkpoint {checkpoint}: no such file")
        actual = file_sha256(checkpoint)
        if weights.get("kind") == "random":
            raise UsageError(f"{onnx_path} was exported with random weights (seed "
                             f"{weights.get('seed')}), not from a checkpoint",
                             tip=f"verify with --random-weights --seed {weights.get('seed')}")
        if exported_sha and actual != exported_sha:
            raise CheckpointError(f"checkpoint {checkpoint} (sha256 {actual[:12]}...) is not the "
                                  f"one {onnx_path} was exported from (sha256 {exported_sha[:12]}...)")
        return checkpoint, int(weights.get("seed", 0) or 0)
    if weights.get("kind") == "checkpoint":
        if seed is not None:
            raise UsageError(f"{onnx_path} was exported from checkpoint {weights.get('path')}, "
                             f"not from random weights", tip="pass --checkpoint FILE")
        path = Path(weights.get("path", ""))
        if not path.is_file():
            raise CheckpointError(f"{onnx_path} was exported from checkpoint {path}, which is gone",
                                  tip="pass --checkpoint with the same file")
        return _weights_for(metadata, path, None, onnx_path)
    exported_seed = weights.get("seed")
    if seed is not None and exported_seed is not None and int(seed) != int(exported_seed):
        raise UsageError(f"{onnx_path} was exported with random weights from seed {exported_seed}, "
                         f"not {seed}", tip=f"pass --seed {exported_seed}")
    if exported_seed is None and seed is None:
        raise UsageError(f"{onnx_path} does not say which weights it holds",
                         tip="pass --checkpoint FILE or --random-weights --seed N")
    return None, int(exported_seed if seed is None else seed)


def verify(onnx_path: Path, *, tree: Optional[Path] = None, checkpoint: Optional[Path] = None,
           seed: Optional[int] = None, images: Sequence[Path] = (), runtime: str = "onnxruntime",
           tolerances: Optional[Mapping[str, Tolerance]] = None, report_path: Optional[Path] = None,
           trust_checkpoint: bool = False, input_seed: int = 0, top_k: int = TOP_K,
           sink: ProgressSink = NULL_SINK) -> VerifyReport:
    """Compares ``onnx_path`` with its PyTorch model; writes and returns the report.

    ``tolerances`` maps head names to a Tolerance (heads not named get the precision's
    default, :data:`DEFAULT_TOLERANCES`; the key "detections" sets the detection bound).
    """
    import onnx

    onnx_path = Path(onnx_path).resolve()
    if runtime not in RUNTIMES:
        raise UsageError(f"runtime {runtime!r}: valid runtimes are {', '.join(RUNTIMES)}")
    if not onnx_path.is_file():
        raise UsageError(f"model {onnx_path}: no such file")
    try:
        model = onnx.load(str(onnx_path))
    except Exception as error:  # onnx raises DecodeError and others for a damaged file
        raise UsageError(f"model {onnx_path} is not a readable ONNX file ({error})") from error
    metadata = read_metadata(model)
    if not metadata:
        raise UsageError(f"model {onnx_path} carries no centernet-patch metadata",
                         tip="verify models written by `centernet-patch export`")
    task, arch = metadata["task"], metadata["arch"]
    input_size = tuple(metadata["input_size"])
    heads = list(metadata["heads"])
    precision = metadata.get("precision", "fp32")
    tree = check_patched_tree(Path(tree) if tree else Path(metadata["tree"]))
    checkpoint, seed = _weights_for(metadata, checkpoint, seed, onnx_path)
    report_path = Path(report_path) if report_path else onnx_path.with_suffix(".verify.json")

    default = DEFAULT_TOLERANCES[precision]
    tolerances = dict(tolerances or {})
    head_tolerance = {name: tolerances.get(name, default) for name in heads}
    detection_tolerance = tolerances.get("detections", default)

    static_batch = metadata.get("batch", 1)
    if images:
        with sink.step(f"Preprocessing {len(images)} image(s) as upstream does"):
            batch_inputs = np.stack([
                preprocess(read_image(p), task=task, input_size=input_size,
                           mean=metadata["mean"], std=metadata["std"]) for p in images])
        inputs_text = "images: " + ", ".join(str(p) for p in images)
    else:
        count = RANDOM_BATCH_FOR_DYNAMIC if static_batch == "dynamic" else int(static_batch)
        batch_inputs = random_inputs(input_seed, count, input_size)
        inputs_text = f"random normal, seed {input_seed}, batch {count}"
    if static_batch != "dynamic" and batch_inputs.shape[0] != int(static_batch):
        raise UsageError(f"{onnx_path} takes a batch of {static_batch}; got {batch_inputs.shape[0]} "
                         f"image(s)")
    if precision == "fp16":
        batch_inputs = batch_inputs.astype(np.float16)

    with tempfile.TemporaryDirectory(prefix="centernet-patch-verify-") as work:
        work_dir = Path(work)
        rewritten = 0
        if runtime == "onnxruntime":
            with sink.step("Running the ONNX model in ONNX Runtime (CPU)"):
                rewritten = count_dcn_nodes(model)[CONTRACT.onnx_op_type]
                runnable = dcnv2_to_deform_conv(model) if rewritten else model
                onnx_outputs = run_onnxruntime(runnable, batch_inputs, heads)
        else:
            onnx_outputs = run_tensorrt(onnx_path, batch_inputs, work_dir, sink)
        arrays_path = work_dir / "arrays.npz"
        np.savez(arrays_path, input=batch_inputs,
                 **{f"onnx/{h}": np.asarray(onnx_outputs[h]) for h in heads})
        request = {"action": "verify", "task": task, "arch": arch, "input_size": list(input_size),
                   "checkpoint": str(checkpoint) if checkpoint else None,
                   "trust_checkpoint": trust_checkpoint, "seed": seed, "top_k": top_k,
                   "arrays_path": str(arrays_path), "results_path": str(work_dir / "results.npz")}
        with sink.step(f"Running the PyTorch model from {tree} and decoding both"):
            result = run_in_tree(tree, request, work_dir=work_dir,
                                 log_path=work_dir / "verify.log")
        if result["facts"]["heads"] != metadata["heads"]:
            raise VerificationFailed(f"the tree's {task} heads {result['facts']['heads']} differ "
                                     f"from the model's {metadata['heads']}")
        results = dict(np.load(request["results_path"]))

    head_results = [compare_head(h, np.asarray(onnx_outputs[h]), results[f"torch/{h}"],
                                 head_tolerance[h]) for h in heads]
    decoded = {side: {key: results[f"decoded/{side}/{key}"]
                      for key in ("detections", "scores", "indices", "classes")}
               for side in ("torch", "onnx")}
    detections = compare_detections(decoded["torch"], decoded["onnx"], detection_tolerance)
    passed = all(h.passed for h in head_results) and detections.passed
    report = VerifyReport(heads=head_results, detections=detections,
                          detections_match=detections.passed, passed=passed,
                          report_path=report_path, onnx_path=onnx_path, runtime=runtime,
                          inputs=inputs_text, torch_device=result["torch_device"],
                          rewritten_dcn_nodes=rewritten, metadata=metadata)
    try:
        report_path.write_text(json.dumps(report.to_json(), indent=2) + "\n", encoding="utf-8")
    except OSError as error:
        raise UsageError(f"report path {report_path} is not writable ({error.strerror or error})") from error
    return report
