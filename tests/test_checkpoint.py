"""Checkpoints are untrusted input: safe loading, loud mismatches, clear errors."""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from patcher.checkpoint import check_fits, load_checkpoint, load_into
from patcher.errors import CheckpointError


def small_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Conv2d(4, 2, 1))


def save_upstream(path: Path, state_dict, epoch=140, **extra) -> Path:
    torch.save({"epoch": epoch, "state_dict": state_dict, **extra}, path)
    return path


def test_loads_upstream_format_with_and_without_data_parallel_prefix(tmp_path):
    source = small_model()
    plain = save_upstream(tmp_path / "plain.pth", source.state_dict())
    wrapped = save_upstream(tmp_path / "wrapped.pth",
                            {"module." + k: v for k, v in source.state_dict().items()}, epoch=70)
    for path, epoch in ((plain, 140), (wrapped, 70)):
        loaded = load_checkpoint(path)
        assert loaded.epoch == epoch
        assert loaded.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
        target = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Conv2d(4, 2, 1))
        load_into(target, loaded, what="the test model")
        for key, value in source.state_dict().items():
            assert torch.equal(target.state_dict()[key], value), key


def test_bare_state_dict_is_accepted(tmp_path):
    source = small_model()
    torch.save(source.state_dict(), tmp_path / "bare.pth")
    loaded = load_checkpoint(tmp_path / "bare.pth")
    assert loaded.epoch is None and set(loaded.state_dict) == set(source.state_dict())


def test_checkpoint_needing_unpickling_is_refused_unless_trusted(tmp_path):
    path = save_upstream(tmp_path / "numpy_epoch.pth", small_model().state_dict(),
                         epoch=np.int64(5))
    with pytest.raises(CheckpointError) as caught:
        load_checkpoint(path)
    assert str(path) in str(caught.value)
    assert "unpickling" in str(caught.value)
    assert "--trust-checkpoint" in caught.value.tip
    assert load_checkpoint(path, trust=True).epoch == 5


@pytest.mark.parametrize("damage", ["truncated", "garbage", "empty"])
def test_damaged_file_is_a_clear_error_naming_it(tmp_path, damage):
    good = save_upstream(tmp_path / "good.pth", small_model().state_dict())
    data = good.read_bytes()
    bad = tmp_path / f"{damage}.pth"
    bad.write_bytes({"truncated": data[: len(data) // 2], "garbage": b"not a checkpoint" * 64,
                     "empty": b""}[damage])
    with pytest.raises(CheckpointError) as caught:
        load_checkpoint(bad)
    assert str(bad) in str(caught.value)
    assert "truncated, corrupt" in str(caught.value)


def test_missing_file_and_non_checkpoint_content(tmp_path):
    with pytest.raises(CheckpointError, match="no such file"):
        load_checkpoint(tmp_path / "absent.pth")
    torch.save({"optimizer": {}, "lr": 0.1}, tmp_path / "other.pth")
    with pytest.raises(CheckpointError, match="not a CenterNet checkpoint"):
        load_checkpoint(tmp_path / "other.pth")


def test_mismatches_are_listed_by_kind(tmp_path):
    state = small_model().state_dict()
    state["2.weight"] = torch.zeros(5, 4, 1, 1)  # wrong shape
    del state["0.bias"]  # missing
    state["head.extra"] = torch.zeros(1)  # unexpected
    path = save_upstream(tmp_path / "wrong.pth", state)
    with pytest.raises(CheckpointError) as caught:
        load_into(small_model(), load_checkpoint(path), what="task X")
    message = str(caught.value)
    assert "does not fit task X" in message
    assert "missing from the checkpoint (1): 0.bias" in message
    assert "unexpected in the checkpoint (1): head.extra" in message
    assert "2.weight (checkpoint (5, 4, 1, 1), model (2, 4, 1, 1))" in message


def test_batchnorm_counter_may_be_absent(tmp_path):
    source = small_model()
    state = {k: v for k, v in source.state_dict().items() if not k.endswith("num_batches_tracked")}
    loaded = load_checkpoint(save_upstream(tmp_path / "old.pth", state))
    check_fits(small_model().state_dict(), loaded, what="m")  # no error
