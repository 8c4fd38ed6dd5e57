"""TensorRT engines for exported models: build, run, benchmark (TensorRT's Python API).

Only usable where TensorRT (the ``tensorrt`` Python package with its libraries) and a CUDA
build of torch are installed; everywhere else :func:`require` raises
MissingDependencyError with a plain message and the CLI exits with code 3.

Precision: TensorRT 11 builds strongly typed networks, so an engine's precision is what the
ONNX tensor types say (export an fp16 model for an fp16 engine); on TensorRT 10 ``fp16=True``
sets the builder's FP16 flag on an fp32 model.

Each engine gets a sidecar ``<engine>.json`` naming the plugin library it needs, so
:func:`run_engine` and :func:`bench_engine` load the right plugin before deserializing.
"""
from __future__ import annotations

import contextlib
import json
import os
import statistics
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

from patcher.errors import BuildError, MissingDependencyError, UsageError
from patcher.progress import NULL_SINK, ProgressSink

INSTALL_TIP = ("install TensorRT 10 or 11 with its Python package (NVIDIA's pip index or a "
               "TensorRT tarball) and a CUDA build of torch, then run `centernet-patch doctor`")
DEFAULT_BATCH_PROFILE = (1, 1, 8)  # min, opt, max batch when the model's batch is dynamic
_loaded_libraries: Dict[str, Any] = {}


@dataclass(frozen=True)
class TensorRTInfo:
    version: str
    major: int


@dataclass(frozen=True)
class EngineBuildResult:
    engine_path: Path
    log_path: Path
    metadata_path: Path
    tensorrt_version: str
    precision: str  # "from ONNX types" (TensorRT 11) or "fp32"/"fp16" (TensorRT 10 flags)
    batch_profile: Optional[Tuple[int, int, int]]
    inputs: Dict[str, List[int]]


@dataclass(frozen=True)
class BenchStats:
    engine: str
    device: str
    tensorrt_version: str
    batch: int
    warmup: int
    iters: int
    mean_ms: float
    median_ms: float
    p99_ms: float
    min_ms: float
    images_per_s: float
    latencies_ms: List[float] = field(repr=False, default_factory=list)
    # The plugin's keep-packed-weights setting the engine ran with ("1": kept; "": packed
    # on every enqueue, the default).
    plugin_keep_packed_weights: str = ""

    def to_json(self) -> Dict[str, Any]:
        return asdict(self)


# -- detection ------------------------------------------------------------------------------

def detect() -> Optional[TensorRTInfo]:
    """TensorRT's version where its Python package imports, else None."""
    try:
        import tensorrt as trt  # noqa: F401
    except Exception:  # ImportError, or a broken install (missing libnvinfer) raising anything
        return None
    version = str(getattr(trt, "__version__", "0"))
    try:
        major = int(version.split(".")[0])
    except ValueError:
        major = 0
    return TensorRTInfo(version=version, major=major)


def require(what: str = "this command"):
    """The ``tensorrt`` module, or MissingDependencyError saying plainly what is missing."""
    info = detect()
    if info is None:
        raise MissingDependencyError(
            f"TensorRT is not installed: {what} needs TensorRT's Python package (tensorrt)",
            tip=INSTALL_TIP)
    if info.major < 10:
        raise MissingDependencyError(
            f"TensorRT {info.version} is too old: {what} needs TensorRT 10 or 11", tip=INSTALL_TIP)
    import tensorrt as trt

    return trt


def _require_cuda_torch(what: str):
    try:
        import torch
    except ImportError as error:
        raise MissingDependencyError(f"{what} needs torch: {error}", tip=INSTALL_TIP) from error
    if not torch.cuda.is_available():
        raise MissingDependencyError(f"{what} needs a CUDA GPU and a CUDA build of torch "
                                     f"(torch {torch.__version__} sees no GPU)", tip=INSTALL_TIP)
    return torch


# -- logging and plugins --------------------------------------------------------------------

def _make_logger(trt, log_path: Optional[Path]):
    class FileLogger(trt.ILogger):
        """Keeps TensorRT's messages (INFO and up) in the build log, errors for the report."""

        def __init__(self) -> None:
            trt.ILogger.__init__(self)
            self.errors: List[str] = []
            self.lines: List[str] = []

        def log(self, severity, msg):  # called by TensorRT
            level = int(severity)  # INTERNAL_ERROR 0, ERROR 1, WARNING 2, INFO 3, VERBOSE 4
            if level <= int(trt.ILogger.Severity.INFO):
                self.lines.append(f"[{severity.name}] {msg}")
                if log_path is not None:
                    with Path(log_path).open("a", encoding="utf-8") as out:
                        out.write(f"[{severity.name}] {msg}\n")
            if level <= int(trt.ILogger.Severity.ERROR):
                self.errors.append(msg)

    return FileLogger()


def load_plugin(trt, library: Path) -> None:
    """Loads the plugin library into TensorRT's registry once per process."""
    library = Path(library).resolve()
    if not library.is_file():
        raise UsageError(f"plugin library not found: {library}",
                         tip="build it with `centernet-patch build` or pass --plugin")
    key = str(library)
    if key in _loaded_libraries:
        return
    handle = trt.get_plugin_registry().load_library(key)
    if handle is None:
        raise BuildError(f"TensorRT could not load the plugin library {library}")
    _loaded_libraries[key] = handle


def _metadata_path(engine_path: Path) -> Path:
    return Path(str(engine_path) + ".json")


def _plugin_for_engine(engine_path: Path, plugin_library: Optional[Path]) -> Optional[Path]:
    if plugin_library is not None:
        return Path(plugin_library)
    meta = _metadata_path(engine_path)
    if meta.is_file():
        try:
            recorded = json.loads(meta.read_text(encoding="utf-8")).get("plugin_library")
        except ValueError:
            recorded = None
        if recorded and Path(recorded).is_file():
            return Path(recorded)
    from patcher.trt_build import find_plugin_library

    return find_plugin_library(Path(engine_path).parent)


# -- build ----------------------------------------------------------------------------------

def _dims(shape) -> List[int]:
    return [int(d) for d in shape]


def _tree_named_in(onnx_path: Path) -> Optional[Path]:
    """The patched tree an exported model names in its metadata, if any."""
    try:
        import onnx

        from patcher.onnx_tools import read_metadata

        tree = read_metadata(onnx.load(str(onnx_path), load_external_data=False)).get("tree")
    except Exception:  # not our export, or unreadable: the parser will say so later
        return None
    return Path(tree) if tree else None


def default_plugin_library(onnx_path: Path) -> Path:
    """The plugin built for the model: in a trt_plugin_build/ at or above the model's folder,
    in the tree named in the model's metadata, or at or above the current directory."""
    from patcher.trt_build import find_plugin_library

    onnx_path = Path(onnx_path).resolve()
    places = [onnx_path.parent]
    tree = _tree_named_in(onnx_path) if onnx_path.is_file() else None
    if tree is not None:
        places.append(tree)
    places.append(Path.cwd())
    for place in places:
        plugin = find_plugin_library(place)
        if plugin is not None:
            return plugin
    raise MissingDependencyError(
        f"no DCN plugin library found for {onnx_path} (no trt_plugin_build/ at or above "
        + ", ".join(str(p) for p in places) + ")",
        tip="build it with `centernet-patch build TREE` or pass --plugin LIB")


def build_engine(onnx_path: Path, out: Optional[Path] = None, *, plugin_library: Optional[Path] = None,
                 fp16: bool = False, batch_profile: Optional[Tuple[int, int, int]] = None,
                 log_path: Optional[Path] = None, sink: ProgressSink = NULL_SINK) -> EngineBuildResult:
    """Parses ``onnx_path`` with the DCN plugin loaded and writes a serialized engine to ``out``
    (default: beside the model, .engine).

    ``plugin_library``: default, the plugin built into the tree holding the model.
    A dynamic batch dimension gets one optimization profile ``batch_profile`` (min, opt, max;
    default 1, 1, 8); other dynamic dims are not supported (export with a fixed input size).
    """
    trt = require("build-engine")
    info = detect()
    assert info is not None
    onnx_path = Path(onnx_path)
    if not onnx_path.is_file():
        raise UsageError(f"ONNX model not found: {onnx_path}")
    out = Path(out) if out is not None else onnx_path.with_suffix(".engine")
    plugin_library = Path(plugin_library) if plugin_library is not None else \
        default_plugin_library(onnx_path)
    if fp16 and info.major >= 11:
        raise UsageError(
            f"--fp16 does not exist on TensorRT {info.version}: networks are strongly typed and "
            "the precision is what the ONNX tensor types say",
            tip="export an fp16 model (centernet-patch export --precision fp16) and build it as is")
    if batch_profile is not None:
        low, opt, high = batch_profile
        if not 1 <= low <= opt <= high:
            raise UsageError(f"batch profile must satisfy 1 <= min <= opt <= max: got: {batch_profile}")
    out.parent.mkdir(parents=True, exist_ok=True)
    log_path = Path(log_path) if log_path is not None else Path(str(out) + ".build.log")
    log_path.write_text("", encoding="utf-8")
    logger = _make_logger(trt, log_path)
    load_plugin(trt, plugin_library)

    builder = trt.Builder(logger)
    network = builder.create_network(0)
    parser = trt.OnnxParser(network, logger)
    with sink.step(f"Parsing {onnx_path.name}"):
        if not parser.parse_from_file(str(onnx_path)):
            errors = [str(parser.get_error(i)) for i in range(parser.num_errors)]
            raise BuildError(f"TensorRT's ONNX parser rejected {onnx_path}",
                             log_tail="\n".join(errors + logger.errors[-10:]), log_path=str(log_path))
    config = builder.create_builder_config()
    precision = "from ONNX types" if info.major >= 11 else "fp32"
    if fp16:
        config.set_flag(trt.BuilderFlag.FP16)
        precision = "fp16"

    inputs: Dict[str, List[int]] = {}
    dynamic_batch = False
    for i in range(network.num_inputs):
        tensor = network.get_input(i)
        shape = _dims(tensor.shape)
        inputs[tensor.name] = shape
        if any(d < 0 for d in shape[1:]):
            raise UsageError(f"input '{tensor.name}' of {onnx_path} has dynamic dims besides the "
                             f"batch: {shape}", tip="export with a fixed --input-size")
        dynamic_batch = dynamic_batch or (bool(shape) and shape[0] < 0)
    profile_used: Optional[Tuple[int, int, int]] = None
    if dynamic_batch:
        profile_used = tuple(batch_profile or DEFAULT_BATCH_PROFILE)  # type: ignore[assignment]
        profile = builder.create_optimization_profile()
        for name, shape in inputs.items():
            if shape and shape[0] < 0:
                rest = shape[1:]
                profile.set_shape(name, [profile_used[0], *rest], [profile_used[1], *rest],
                                  [profile_used[2], *rest])
        config.add_optimization_profile(profile)
    elif batch_profile is not None:
        sink.warn(f"{onnx_path.name} has a fixed batch: the batch profile {batch_profile} is ignored")

    with sink.step(f"Building the TensorRT engine ({precision})"):
        serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise BuildError("TensorRT could not build the engine",
                         log_tail="\n".join(logger.errors[-20:] or logger.lines[-20:]),
                         log_path=str(log_path))
    out.write_bytes(bytes(serialized))
    meta = _metadata_path(out)
    meta.write_text(json.dumps({
        "onnx": str(onnx_path.resolve()),
        "plugin_library": str(Path(plugin_library).resolve()),
        "tensorrt_version": info.version,
        "precision": precision,
        "batch_profile": list(profile_used) if profile_used else None,
        "inputs": inputs,
    }, indent=2), encoding="utf-8")
    sink.info(f"engine written: {out}")
    return EngineBuildResult(engine_path=out, log_path=log_path, metadata_path=meta,
                             tensorrt_version=info.version, precision=precision,
                             batch_profile=profile_used, inputs=inputs)


# -- run ------------------------------------------------------------------------------------

def _torch_dtype(trt, torch, dtype):
    table = {
        trt.DataType.FLOAT: torch.float32,
        trt.DataType.HALF: torch.float16,
        trt.DataType.INT32: torch.int32,
        trt.DataType.INT8: torch.int8,
        trt.DataType.BOOL: torch.bool,
    }
    for name, torch_type in (("BF16", torch.bfloat16), ("INT64", torch.int64), ("UINT8", torch.uint8)):
        if hasattr(trt.DataType, name):
            table[getattr(trt.DataType, name)] = torch_type
    if dtype not in table:
        raise UsageError(f"engine tensor type {dtype} is not supported here")
    return table[dtype]


class _Engine:
    """A deserialized engine with one execution context, driven with torch CUDA tensors."""

    def __init__(self, engine_path: Path, plugin_library: Optional[Path], what: str) -> None:
        self.trt = trt = require(what)
        self.torch = _require_cuda_torch(what)
        engine_path = Path(engine_path)
        if not engine_path.is_file():
            raise UsageError(f"engine not found: {engine_path}")
        plugin = _plugin_for_engine(engine_path, plugin_library)
        if plugin is not None:
            load_plugin(trt, plugin)
        self.logger = _make_logger(trt, None)
        self.runtime = trt.Runtime(self.logger)
        self.engine = self.runtime.deserialize_cuda_engine(engine_path.read_bytes())
        if self.engine is None:
            raise BuildError(f"TensorRT could not deserialize {engine_path}"
                             + ("" if plugin else " (no DCN plugin library found: pass --plugin)"),
                             log_tail="\n".join(self.logger.errors[-10:]))
        self.context = self.engine.create_execution_context()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        self.inputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        self.outputs = [n for n in names if n not in self.inputs]

    def dtype(self, name: str):
        return _torch_dtype(self.trt, self.torch, self.engine.get_tensor_dtype(name))

    def opt_shape(self, name: str, batch: int) -> List[int]:
        shape = _dims(self.engine.get_tensor_shape(name))
        if any(d < 0 for d in shape):
            opt = _dims(self.engine.get_tensor_profile_shape(name, 0)[1])
            shape = [o if d < 0 else d for d, o in zip(shape, opt)]
        return [batch, *shape[1:]] if shape else shape

    def bind(self, feeds: Dict[str, Any]) -> Dict[str, Any]:
        """Sets input shapes and addresses; returns freshly allocated outputs."""
        missing = set(self.inputs) - set(feeds)
        if missing:
            raise UsageError(f"engine inputs not given: {sorted(missing)} (engine takes {self.inputs})")
        for name in self.inputs:
            tensor = feeds[name]
            self.context.set_input_shape(name, tuple(tensor.shape))
            self.context.set_tensor_address(name, tensor.data_ptr())
        outputs = {}
        for name in self.outputs:
            shape = _dims(self.context.get_tensor_shape(name))
            outputs[name] = self.torch.empty(shape, dtype=self.dtype(name), device="cuda")
            self.context.set_tensor_address(name, outputs[name].data_ptr())
        return outputs

    def execute(self, stream) -> None:
        if not self.context.execute_async_v3(stream.cuda_stream):
            raise BuildError("TensorRT failed to run the engine",
                             log_tail="\n".join(self.logger.errors[-10:]))


def run_engine(engine_path: Path, inputs: Dict[str, Any], *,
               plugin_library: Optional[Path] = None) -> Dict[str, Any]:
    """Runs the engine once on numpy ``inputs`` (by input name); returns numpy outputs."""
    import numpy as np

    eng = _Engine(engine_path, plugin_library, "running a TensorRT engine")
    torch = eng.torch
    feeds = {}
    for name in eng.inputs:
        if name not in inputs:
            raise UsageError(f"engine input '{name}' not given (got: {sorted(inputs)})")
        array = np.ascontiguousarray(inputs[name])
        feeds[name] = torch.from_numpy(array).to(device="cuda", dtype=eng.dtype(name))
    outputs = eng.bind(feeds)
    stream = torch.cuda.Stream()
    eng.execute(stream)
    stream.synchronize()
    return {name: (t.float() if t.dtype == torch.bfloat16 else t).cpu().numpy() for name, t in outputs.items()}


@contextlib.contextmanager
def keep_packed_weights(keep: bool):
    """Within the block, the DCN plugin instances made (engine deserialization, execution
    contexts) keep their packed weights between enqueues when ``keep`` (the contract's
    environment variable at "1"; trt_plugin/README.md); otherwise the environment is left
    as the user set it. The previous value is restored on exit: the plugin reads it only when
    an instance is made."""
    from dcn_ext.contract import CONTRACT

    name = CONTRACT.plugin_keep_packed_weights_env
    previous = os.environ.get(name)
    if keep:
        os.environ[name] = "1"
    try:
        yield os.environ.get(name, "")
    finally:
        if previous is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = previous


def bench_engine(engine_path: Path, *, warmup: int = 20, iters: int = 200, batch: int = 1,
                 plugin_library: Optional[Path] = None, sink: ProgressSink = NULL_SINK,
                 keep_weights: bool = False) -> BenchStats:
    """Latency of one engine execution on random inputs: warm-up runs, then ``iters`` timed
    runs, each timed with CUDA events on its own stream. keep_weights: the DCN plugin keeps
    its packed weights between enqueues (only for engines whose weights are never refit)."""
    if warmup < 0 or iters < 1 or batch < 1:
        raise UsageError(f"need warmup >= 0, iters >= 1, batch >= 1: got: {warmup}, {iters}, {batch}")
    with keep_packed_weights(keep_weights) as setting:
        eng = _Engine(engine_path, plugin_library, "bench")
    torch = eng.torch
    generator = torch.Generator(device="cuda").manual_seed(0)
    feeds = {}
    for name in eng.inputs:
        dtype = eng.dtype(name)
        shape = eng.opt_shape(name, batch)
        if dtype.is_floating_point:
            feeds[name] = torch.randn(shape, device="cuda", generator=generator).to(dtype)
        else:
            feeds[name] = torch.zeros(shape, device="cuda", dtype=dtype)
    eng.bind(feeds)
    stream = torch.cuda.Stream()
    with sink.step(f"Warming up ({warmup} runs)"):
        for _ in range(warmup):
            eng.execute(stream)
        stream.synchronize()
    latencies: List[float] = []
    with sink.step(f"Timing {iters} runs at batch {batch}"):
        for _ in range(iters):
            start = torch.cuda.Event(enable_timing=True)
            end = torch.cuda.Event(enable_timing=True)
            start.record(stream)
            eng.execute(stream)
            end.record(stream)
            end.synchronize()
            latencies.append(start.elapsed_time(end))
    stats = summarize(latencies, engine=str(engine_path), device=torch.cuda.get_device_name(),
                      tensorrt_version=detect().version, batch=batch, warmup=warmup)  # type: ignore[union-attr]
    return replace(stats, plugin_keep_packed_weights=setting)


def summarize(latencies_ms: Sequence[float], *, engine: str, device: str, tensorrt_version: str,
              batch: int, warmup: int) -> BenchStats:
    """Mean / median / p99 (nearest rank) latency and images per second from run times."""
    if not latencies_ms:
        raise UsageError("no timed runs to summarize")
    ordered = sorted(latencies_ms)
    rank = max(1, -(-99 * len(ordered) // 100))  # ceil(0.99 n), 1-based nearest rank
    mean = statistics.fmean(ordered)
    return BenchStats(engine=engine, device=device, tensorrt_version=tensorrt_version, batch=batch,
                      warmup=warmup, iters=len(ordered), mean_ms=mean,
                      median_ms=statistics.median(ordered), p99_ms=ordered[rank - 1],
                      min_ms=ordered[0], images_per_s=batch * 1000.0 / mean,
                      latencies_ms=list(latencies_ms))
