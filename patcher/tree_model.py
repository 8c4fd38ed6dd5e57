"""The side of export and verify that runs a patched CenterNet tree's own code.

A CenterNet tree is imported the way upstream imports it: ``src/lib`` on ``sys.path`` and
top-level modules named ``opts``, ``models``, ``utils``, ``datasets``. Two trees cannot
share one interpreter (same module names; the compiled DCN op registers itself with torch
once per process), and this tool's own process should not be left holding a tree's
modules. So :func:`run_in_tree` starts a fresh interpreter per job: ``python -m
patcher.tree_model REQUEST RESULT``, with the tree's code on its path and its output
captured in a log file. Inside that process the functions below call the tree's
``opts().init``, ``create_model`` and ``models.decode`` directly.

The recipe's script (patches/src/export_onnx_ddd.py, placed in ``CenterNet/src``) is such
a process already and calls :func:`export_in_tree` itself.
"""
from __future__ import annotations

import contextlib
import json
import math
import os
import subprocess
import sys
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

from . import errors
# Set for every tree process: the patched networks skip ImageNet downloads when it is set
# (the export path has no network; a checkpoint or a seed gives every weight). A model
# built that way lacks the ImageNet classifier keys trained checkpoints carry.
from .codemods import NO_PRETRAINED_ENV, OFFLINE_ABSENT_KEY_PREFIXES
from .errors import CenterNetPatchError, ExportError, TargetError

# Upstream's default random seed (opts.py `--seed`), used when the user gives none.
DEFAULT_SEED = 317
# Input size of the batch that sets BatchNorm statistics of random weights (any multiple of
# 32 works; small keeps it quick).
CALIBRATION_SIZE = (128, 128)


# ---------------------------------------------------------------- the parent's side

def run_in_tree(tree: Path, request: Dict[str, Any], *, work_dir: Path,
                log_path: Path) -> Dict[str, Any]:
    """Runs one job in a fresh interpreter inside ``tree``; returns its result dict.

    A :class:`~patcher.errors.CenterNetPatchError` raised there is raised here again with
    the same class, message and tip; anything else becomes an ExportError that points to
    the log.
    """
    request_path = work_dir / "request.json"
    result_path = work_dir / "result.json"
    request_path.write_text(json.dumps({**request, "tree": str(tree)}), encoding="utf-8")
    if result_path.exists():
        result_path.unlink()
    package_root = str(Path(__file__).resolve().parent.parent)
    env = dict(os.environ)
    env[NO_PRETRAINED_ENV] = "1"
    env["PYTHONPATH"] = os.pathsep.join([package_root] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    env.setdefault("PYTHONWARNINGS", "default")
    with open(log_path, "w", encoding="utf-8") as log:
        done = subprocess.run(
            [sys.executable, "-m", "patcher.tree_model", str(request_path), str(result_path)],
            cwd=str(tree / "src"), env=env, stdout=log, stderr=subprocess.STDOUT)
    if not result_path.exists():
        raise ExportError(
            f"the {request.get('action')} process in {tree} ended without a result "
            f"(exit code {done.returncode}); its output is in {log_path}")
    result = json.loads(result_path.read_text(encoding="utf-8"))
    failure = result.get("error")
    if failure:
        error_class = getattr(errors, failure["type"], ExportError)
        if not (isinstance(error_class, type) and issubclass(error_class, CenterNetPatchError)):
            error_class = ExportError
        message = failure["message"]
        if failure.get("internal"):
            message += f"\nfull output: {log_path}"
        raise error_class(message, tip=failure.get("tip"))
    return result


def _main(argv: Sequence[str]) -> int:
    request_path, result_path = Path(argv[0]), Path(argv[1])
    request = json.loads(request_path.read_text(encoding="utf-8"))
    try:
        enter_tree(Path(request["tree"]))
        action = _ACTIONS[request["action"]]
        result = action(request)
    except CenterNetPatchError as error:
        result = {"error": {"type": type(error).__name__, "message": error.message, "tip": error.tip}}
    except Exception as error:  # a bug or a tree we do not understand: keep the traceback
        traceback.print_exc()
        result = {"error": {"type": "ExportError", "internal": True,
                            "message": f"{type(error).__name__}: {error}"}}
    result_path.write_text(json.dumps(result), encoding="utf-8")
    return 0


# ---------------------------------------------------------------- the tree's side

def enter_tree(tree: Path) -> None:
    """Puts the tree's ``src/lib`` first on sys.path, as upstream's _init_paths.py does."""
    lib = tree / "src" / "lib"
    for path in (str(tree / "src"), str(lib)):
        if path not in sys.path:
            sys.path.insert(0, path)
    os.environ.setdefault(NO_PRETRAINED_ENV, "1")


@dataclass
class TreeModel:
    model: Any  # torch.nn.Module returning the heads as a tuple
    opt: Any  # the tree's parsed options
    heads: Dict[str, int]
    checkpoint_sha256: Optional[str]
    checkpoint_epoch: Optional[int]


def build_model(task: str, arch: str, input_size: Tuple[int, int], *,
                checkpoint: Optional[str], trust_checkpoint: bool, seed: int) -> TreeModel:
    """The tree's own model for ``task``/``arch``, with checkpoint or seeded random weights."""
    import torch

    from .checkpoint import load_checkpoint, load_into

    opt = _tree_options(task, arch, input_size)
    heads = dict(opt.heads)
    torch.manual_seed(seed)
    try:
        from models.model import create_model  # the tree's own factory
        network = create_model(opt.arch, opt.heads, opt.head_conv)
    except (ImportError, OSError) as error:
        raise TargetError(
            f"the tree's model code does not import: {type(error).__name__}: {error}",
            tip="run `centernet-patch apply` and `centernet-patch build` on the tree first") from error
    described = f"task {task} with arch {arch} (heads {heads})"
    sha256 = epoch = None
    if checkpoint:
        loaded = load_checkpoint(Path(checkpoint), trust=trust_checkpoint)
        load_into(network, loaded, what=described, absent_from_model=OFFLINE_ABSENT_KEY_PREFIXES)
        sha256, epoch = loaded.sha256, loaded.epoch
    else:
        randomize_for_verification(network, list(heads), seed)
    network.eval()
    return TreeModel(model=wrap_heads(network, list(heads)), opt=opt, heads=heads,
                     checkpoint_sha256=sha256, checkpoint_epoch=epoch)


def _tree_options(task: str, arch: str, input_size: Tuple[int, int]) -> Any:
    from opts import opts  # the tree's own options

    args = [task, "--arch", arch, "--gpus", "-1",
            "--input_h", str(input_size[0]), "--input_w", str(input_size[1])]
    with contextlib.redirect_stdout(sys.stderr):  # upstream prints its settings
        return opts().init(args)


def randomize_for_verification(network: Any, heads: List[str], seed: int) -> None:
    """Seeded random weights that make every output of the model carry signal.

    Upstream's initialisation suits training, not verification: it zeroes each DCN's
    offset/mask branch (so DCN samples the regular grid with mask 0.5 and offset-layout
    errors go unseen) and gives the final head convs std 0.001 (outputs ~1e-8, and a
    near-flat heatmap whose top-100 peaks are all ties); and with BatchNorm's default
    statistics activations shrink layer by layer. Here the offset branches get offsets of
    about a pixel, the head convs He-scaled weights, and every BatchNorm the statistics of
    one seeded random batch (so each layer's output has unit scale, as in a trained model).
    """
    import torch

    generator = torch.Generator().manual_seed(seed + 1)

    def normal_(tensor, std):
        tensor.copy_(torch.randn(tensor.shape, generator=generator) * std)

    with torch.no_grad():
        for module in network.modules():
            branch = getattr(module, "conv_offset_mask", None)
            if branch is not None:
                # Offsets mostly from the bias (about a pixel, fixed per channel), only a
                # little from the features: random offset weights of full scale make a
                # chaotic network, where float32 rounding in one layer moves the samples
                # of the next and 16 chained DCNs amplify it beyond any tolerance.
                normal_(branch.weight, 0.1 / math.sqrt(branch.weight[0].numel()))
                normal_(branch.bias, 1.0)
        for name in heads:
            for conv in getattr(network, name).modules():  # biases kept (hm's is -2.19)
                if isinstance(conv, torch.nn.Conv2d):
                    normal_(conv.weight, math.sqrt(2.0 / conv.weight[0].numel()))
        norms = [m for m in network.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
        momenta = [m.momentum for m in norms]
        for norm in norms:
            norm.reset_running_stats()
            norm.momentum = None  # a cumulative average: after one batch, that batch's statistics
        network.train()
        network(torch.randn((2, 3, *CALIBRATION_SIZE), generator=generator))
        network.eval()
        for norm, momentum in zip(norms, momenta):
            norm.momentum = momentum
            # A channel that hardly varies on the batch (ReLU-dead) would be scaled up by
            # up to 1/sqrt(eps), amplifying rounding noise 300-fold; cap the gain at ~3.
            norm.running_var.clamp_(min=0.1)


def wrap_heads(network: Any, heads: List[str]) -> Any:
    """``network`` wrapped so that it returns the head outputs as a tuple (see below)."""
    import torch

    class HeadOutputs(torch.nn.Module):
        """Returns the network's head outputs as a tuple in upstream's head order.

        Upstream's networks return ``[dict]`` (one dict per stack); ONNX needs tensors.
        """

        def __init__(self, network: torch.nn.Module, heads: List[str]):
            super().__init__()
            self.network = network
            self.heads = list(heads)

        def forward(self, image: torch.Tensor):
            outputs = self.network(image)[-1]
            return tuple(outputs[name] for name in self.heads)

    return HeadOutputs(network, heads)


def model_facts(tree_model: TreeModel) -> Dict[str, Any]:
    """What the metadata needs from the tree's options."""
    import torch

    opt = tree_model.opt
    return {
        "heads": tree_model.heads,
        "head_conv": int(opt.head_conv),
        "mean": [float(v) for v in opt.mean],
        "std": [float(v) for v in opt.std],
        "down_ratio": int(opt.down_ratio),
        "num_classes": int(opt.num_classes),
        "torch_version": torch.__version__,
        "checkpoint_sha256": tree_model.checkpoint_sha256,
        "checkpoint_epoch": tree_model.checkpoint_epoch,
    }


def export_in_tree(request: Dict[str, Any]) -> Dict[str, Any]:
    """Builds the model and writes the ONNX file with the placed dcn package's exporter."""
    import torch

    tree_model = build_model(request["task"], request["arch"], tuple(request["input_size"]),
                             checkpoint=request.get("checkpoint"),
                             trust_checkpoint=request.get("trust_checkpoint", False),
                             seed=request["seed"])
    from models.networks.dcn.onnx_export import export_onnx  # the placed dcn package

    model = tree_model.model
    dtype = torch.float16 if request["precision"] == "fp16" else torch.float32
    device = "cuda" if dtype == torch.float16 and torch.cuda.is_available() else "cpu"
    model = model.to(device=device, dtype=dtype)
    height, width = request["input_size"]
    example = torch.randn(request["batch"], 3, height, width).to(device=device, dtype=dtype)
    try:
        export_onnx(model, (example,), request["onnx_path"], dcn_op=request["dcn_op"],
                    exporter=request["exporter"], opset=request["opset"],
                    input_names=["input"], output_names=list(tree_model.heads),
                    dynamic_batch=request["dynamic_batch"])
    except CenterNetPatchError:
        raise
    except Exception as error:
        traceback.print_exc()
        raise ExportError(f"torch.onnx export failed: {type(error).__name__}: "
                          f"{str(error).strip().splitlines()[0] if str(error).strip() else ''}") from error
    return {"facts": model_facts(tree_model)}


def verify_in_tree(request: Dict[str, Any]) -> Dict[str, Any]:
    """Runs the PyTorch model on the given inputs and decodes its and ONNX's outputs."""
    import numpy as np
    import torch

    tree_model = build_model(request["task"], request["arch"], tuple(request["input_size"]),
                             checkpoint=request.get("checkpoint"),
                             trust_checkpoint=request.get("trust_checkpoint", False),
                             seed=request["seed"])
    arrays = dict(np.load(request["arrays_path"]))
    inputs = torch.from_numpy(arrays["input"])
    fp16 = inputs.dtype == torch.float16
    device = "cuda" if fp16 and torch.cuda.is_available() else "cpu"
    model = tree_model.model.to(device=device, dtype=inputs.dtype)
    with torch.no_grad():
        torch_outputs = [t.float().cpu() for t in model(inputs.to(device))]
    heads = list(tree_model.heads)
    onnx_outputs = [torch.from_numpy(arrays[f"onnx/{h}"]).float() for h in heads]
    results = {f"torch/{h}": t.numpy() for h, t in zip(heads, torch_outputs)}
    for source, outputs in (("torch", torch_outputs), ("onnx", onnx_outputs)):
        decoded = decode(request["task"], dict(zip(heads, outputs)), k=request["top_k"])
        for key, value in decoded.items():
            results[f"decoded/{source}/{key}"] = value.numpy()
    np.savez(request["results_path"], **results)
    return {"torch_device": device, "facts": model_facts(tree_model)}


def decode(task: str, outputs: Dict[str, Any], *, k: int) -> Dict[str, Any]:
    """Decodes head outputs with the tree's own decoders, after the detectors' activations.

    Returns ``detections`` (the decoder's rows) plus ``scores``, ``indices`` and
    ``classes`` of the top-k peaks (from the same ``_nms``/``_topk`` the decoders call), so
    the two sides can be matched by (class, position) rather than by rank alone.
    """
    import torch
    from models import decode as tree_decode

    heads = {name: value.clone() for name, value in outputs.items()}
    heads["hm"] = heads["hm"].sigmoid()  # what upstream's detectors do before decoding
    if task == "ddd":
        heads["dep"] = 1.0 / (heads["dep"].sigmoid() + 1e-6) - 1.0
        detections = tree_decode.ddd_decode(heads["hm"], heads["rot"], heads["dep"], heads["dim"],
                                            wh=heads.get("wh"), reg=heads.get("reg"), K=k)
    elif task == "ctdet":
        detections = tree_decode.ctdet_decode(heads["hm"], heads["wh"], reg=heads.get("reg"), K=k)
    elif task == "multi_pose":
        hm_hp = heads["hm_hp"].sigmoid() if "hm_hp" in heads else None
        detections = tree_decode.multi_pose_decode(heads["hm"], heads["wh"], heads["hps"],
                                                   reg=heads.get("reg"), hm_hp=hm_hp,
                                                   hp_offset=heads.get("hp_offset"), K=k)
    else:
        raise errors.UsageError(f"no decoder for task {task}")
    scores, indices, classes, _, _ = tree_decode._topk(tree_decode._nms(heads["hm"]), K=k)
    return {"detections": detections.float(), "scores": scores.float(),
            "indices": indices.long(), "classes": classes.long()}


_ACTIONS = {"export": export_in_tree, "verify": verify_in_tree}


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
