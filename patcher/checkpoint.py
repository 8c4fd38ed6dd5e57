"""Loading CenterNet checkpoints as untrusted input.

Upstream saves ``{'epoch': int, 'state_dict': {...}}`` (keys prefixed ``module.`` when the
model was wrapped in DataParallel) and loads it with ``strict=False``, printing a line for
every key that does not fit and keeping random weights for it. An export made that way
looks fine and detects nothing, so here every mismatch is an error that lists the keys.

Files are read with ``torch.load(weights_only=True)``: a checkpoint that needs arbitrary
unpickling (numpy scalars, custom classes) is refused unless the caller says it trusts it.
"""
from __future__ import annotations

import hashlib
import pickle
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from .errors import CheckpointError

# DataParallel's prefix; upstream strips it the same way (but keeps `module_list...`).
_DATA_PARALLEL_PREFIX = "module."
# BatchNorm's step counter: not a weight, absent from checkpoints saved before torch 0.4.1,
# and unused in eval mode, so its absence is not a mismatch.
_OPTIONAL_KEY_SUFFIXES = ("num_batches_tracked",)
# How many offending keys an error message lists per kind before summarising.
_LISTED_KEYS = 12
# The phrase torch puts in the error when weights_only refuses a global.
_WEIGHTS_ONLY_MARKER = "Weights only load failed"
_REFUSED_GLOBAL_MARKER = "Unsupported global"


@dataclass(frozen=True)
class Checkpoint:
    path: Path
    sha256: str
    epoch: Optional[int]
    state_dict: Dict[str, Any]  # name -> torch.Tensor, prefixes stripped


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def load_checkpoint(path: Path, *, trust: bool = False) -> Checkpoint:
    """Reads a checkpoint file safely; raises :class:`CheckpointError` naming the file."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path}: no such file")
    sha256 = file_sha256(path)
    try:
        raw = torch.load(path, map_location="cpu", weights_only=not trust)
    except pickle.UnpicklingError as error:
        # torch reports both "needs full unpickling" and plain garbage as UnpicklingError;
        # only the former names a global that its weights-only unpickler refused.
        reason = next((line.strip() for line in str(error).splitlines()
                       if _REFUSED_GLOBAL_MARKER in line), None)
        if trust or _WEIGHTS_ONLY_MARKER not in str(error) or reason is None:
            raise _unreadable(path, error) from error
        reason = reason.split(" was not an allowed")[0].replace("WeightsUnpickler error: ", "")
        raise CheckpointError(
            f"checkpoint {path} needs full unpickling to load ({reason}); unpickling can run "
            f"arbitrary code, so it is refused by default",
            tip="if you trust where this file came from, pass --trust-checkpoint",
        ) from error
    except (RuntimeError, EOFError, OSError, ValueError, zipfile.BadZipFile,
            pickle.PickleError, IndexError, KeyError) as error:
        raise _unreadable(path, error) from error
    state_dict, epoch = _state_dict_of(raw, path)
    return Checkpoint(path=path, sha256=sha256, epoch=epoch,
                      state_dict=strip_data_parallel_prefix(state_dict))


def _unreadable(path: Path, error: BaseException) -> CheckpointError:
    detail = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return CheckpointError(
        f"checkpoint {path} cannot be read: it is truncated, corrupt or not a PyTorch "
        f"file ({type(error).__name__}: {detail})",
        tip="download it again and compare its sha256 with the source's",
    )


def _state_dict_of(raw: Any, path: Path) -> Tuple[Dict[str, Any], Optional[int]]:
    import torch

    if isinstance(raw, Mapping) and "state_dict" in raw:
        state_dict = raw["state_dict"]
        epoch = raw.get("epoch")
    elif isinstance(raw, Mapping) and raw and all(isinstance(v, torch.Tensor) for v in raw.values()):
        state_dict, epoch = raw, None  # a bare state dict (torch.save(model.state_dict()))
    else:
        found = sorted(map(str, raw.keys()))[:_LISTED_KEYS] if isinstance(raw, Mapping) else type(raw).__name__
        raise CheckpointError(
            f"checkpoint {path} is not a CenterNet checkpoint: expected a dict with "
            f"'state_dict' (upstream's format) or a state dict of tensors; got: {found}")
    if not isinstance(state_dict, Mapping):
        raise CheckpointError(f"checkpoint {path}: 'state_dict' is a {type(state_dict).__name__}, "
                              f"expected a dict of tensors")
    not_tensors = [k for k, v in state_dict.items() if not isinstance(v, torch.Tensor)]
    if not_tensors:
        raise CheckpointError(f"checkpoint {path}: entries that are not tensors: "
                              f"{_listing(not_tensors)}")
    try:
        epoch = int(epoch) if epoch is not None else None  # numpy ints in trusted files
    except (TypeError, ValueError):
        epoch = None
    return dict(state_dict), epoch


def strip_data_parallel_prefix(state_dict: Mapping[str, Any]) -> Dict[str, Any]:
    stripped = {}
    for key, value in state_dict.items():
        if key.startswith(_DATA_PARALLEL_PREFIX):
            key = key[len(_DATA_PARALLEL_PREFIX):]
        stripped[key] = value
    return stripped


def check_fits(model_state: Mapping[str, Any], checkpoint: Checkpoint, *, what: str,
               absent_from_model: Sequence[str] = ()) -> None:
    """Raises :class:`CheckpointError` listing missing, unexpected and mis-shaped keys.

    ``what`` names the model being built (task, arch, heads) for the message;
    ``absent_from_model`` lists key prefixes the checkpoint may have and the model lacks
    by design (e.g. the ImageNet classifier a backbone gets only when it downloads).
    """
    loaded = checkpoint.state_dict
    missing = [k for k in model_state if k not in loaded and not k.endswith(_OPTIONAL_KEY_SUFFIXES)]
    unexpected = [k for k in loaded
                  if k not in model_state and not k.startswith(tuple(absent_from_model))]
    misshaped = [f"{k} (checkpoint {tuple(loaded[k].shape)}, model {tuple(model_state[k].shape)})"
                 for k in model_state if k in loaded and tuple(loaded[k].shape) != tuple(model_state[k].shape)]
    if not (missing or unexpected or misshaped):
        return
    lines: List[str] = [f"checkpoint {checkpoint.path} does not fit {what}:"]
    if missing:
        lines.append(f"  missing from the checkpoint ({len(missing)}): {_listing(missing)}")
    if unexpected:
        lines.append(f"  unexpected in the checkpoint ({len(unexpected)}): {_listing(unexpected)}")
    if misshaped:
        lines.append(f"  wrong shape ({len(misshaped)}): {_listing(misshaped)}")
    raise CheckpointError(
        "\n".join(lines),
        tip="check --arch and the task (the heads and their channel counts come from the task)")


def load_into(model: Any, checkpoint: Checkpoint, *, what: str,
              absent_from_model: Sequence[str] = ()) -> None:
    """Checks the fit, then loads strictly (optional counters excepted)."""
    model_state = model.state_dict()
    check_fits(model_state, checkpoint, what=what, absent_from_model=absent_from_model)
    state = {k: v for k, v in checkpoint.state_dict.items() if k in model_state}
    for key in model_state:
        if key not in state:  # only optional counters reach here (check_fits passed)
            state[key] = model_state[key]
    model.load_state_dict(state, strict=True)


def _listing(keys: List[str]) -> str:
    shown = ", ".join(keys[:_LISTED_KEYS])
    return shown + (f", ... and {len(keys) - _LISTED_KEYS} more" if len(keys) > _LISTED_KEYS else "")
