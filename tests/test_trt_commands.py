"""TensorRT-dependent commands where TensorRT is absent, plugin discovery, bench statistics."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from patcher import cli
from patcher.errors import EXIT_MISSING_DEPENDENCY, MissingDependencyError, UsageError
from patcher.tensorrt import detect, summarize
from patcher.trt_build import (BUILD_DIRNAME, HEADERS_MISSING, RECORD_NAME, build_plugin, find_plugin_library,
                                plugin_cuda_arch)

without_tensorrt = pytest.mark.skipif(detect() is not None,
                                      reason="TensorRT is installed here: the absent case cannot be shown")


@without_tensorrt
@pytest.mark.parametrize("argv", [["build-engine", "model.onnx"], ["bench", "model.engine"],
                                  ["build-engine", "model.onnx", "--fp16", "--max-batch", "4"]])
def test_commands_say_plainly_that_tensorrt_is_missing(argv, capsys):
    assert cli.main(argv) == EXIT_MISSING_DEPENDENCY
    err = capsys.readouterr().err
    assert "TensorRT is not installed" in err
    assert "Traceback" not in err


@without_tensorrt
def test_require_raises_missing_dependency():
    from patcher.tensorrt import require, run_engine

    with pytest.raises(MissingDependencyError, match="TensorRT is not installed: verify"):
        require("verify")
    with pytest.raises(MissingDependencyError, match="TensorRT is not installed"):
        run_engine(Path("model.engine"), {})


def test_build_plugin_without_headers_is_a_missing_dependency(tmp_path):
    empty_root = tmp_path / "no_tensorrt"
    empty_root.mkdir()
    with pytest.raises(MissingDependencyError) as caught:
        build_plugin(tmp_path / "tree", tensorrt_root=empty_root)
    assert str(caught.value) == HEADERS_MISSING
    assert str(empty_root) in caught.value.tip
    assert not (tmp_path / "tree").exists()  # nothing written before the check


def test_find_plugin_library_walks_up_from_the_model(tmp_path):
    build = tmp_path / "tree" / BUILD_DIRNAME
    build.mkdir(parents=True)
    library = build / "libdcn_trt_plugin.so"
    library.write_bytes(b"\x7fELF")
    (build / RECORD_NAME).write_text(json.dumps({"library": str(library)}))
    models = tmp_path / "tree" / "exports" / "ddd"
    models.mkdir(parents=True)
    assert find_plugin_library(models) == library
    assert find_plugin_library(tmp_path) is None
    library.unlink()  # a record naming a vanished library is not a plugin
    assert find_plugin_library(models) is None


def test_summarize_latencies():
    stats = summarize([float(v) for v in range(1, 101)], engine="e", device="d",
                      tensorrt_version="11.1", batch=4, warmup=3)
    assert stats.iters == 100
    assert stats.mean_ms == pytest.approx(50.5)
    assert stats.median_ms == pytest.approx(50.5)
    assert stats.p99_ms == 99.0  # nearest rank: the 99th of 100
    assert stats.min_ms == 1.0
    assert stats.images_per_s == pytest.approx(4 * 1000 / 50.5)
    assert json.loads(json.dumps(stats.to_json()))["p99_ms"] == 99.0
    assert summarize([2.0], engine="e", device="d", tensorrt_version="x", batch=1, warmup=0).p99_ms == 2.0
    with pytest.raises(UsageError):
        summarize([], engine="e", device="d", tensorrt_version="x", batch=1, warmup=0)


def test_default_plugin_library_follows_the_tree_named_in_the_model(tmp_path, monkeypatch):
    import onnx
    from onnx import TensorProto, helper

    from patcher.onnx_tools import set_metadata
    from patcher.tensorrt import default_plugin_library

    tree = tmp_path / "CenterNet"
    build = tree / BUILD_DIRNAME
    build.mkdir(parents=True)
    library = build / "libdcn_trt_plugin.so"
    library.write_bytes(b"\x7fELF")
    (build / RECORD_NAME).write_text(json.dumps({"library": str(library)}))
    value = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])
    model = helper.make_model(helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g", [value],
                                                [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])]))
    elsewhere = tmp_path / "out"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    plain = elsewhere / "plain.onnx"
    onnx.save(model, str(plain))
    with pytest.raises(MissingDependencyError, match="no DCN plugin library found"):
        default_plugin_library(plain)
    set_metadata(model, {"tree": str(tree)})
    named = elsewhere / "named.onnx"
    onnx.save(model, str(named))
    assert default_plugin_library(named) == library


@pytest.mark.parametrize("requested, detected, release, expected", [
    ("86;90", "90a", "13.0", "86;90"),   # the caller's list as given
    (None, "90a", "13.0", "90a"),        # an H100 with CUDA 13: wgmma
    (None, "90a", "11.8", "90"),         # no sm_90a before CUDA 12
    (None, "90a", None, "90"),           # nvcc's version unknown: the safe target
    (None, "86", "11.8", "86"),
    (None, None, "12.4", "90a"),         # no GPU: the default, Hopper
])
def test_plugin_cuda_arch(requested, detected, release, expected):
    assert plugin_cuda_arch(requested, detected, release) == expected


def test_keep_packed_weights_sets_the_plugin_variable_only_inside_and_restores_it(monkeypatch):
    from dcn_ext.contract import CONTRACT
    from patcher.tensorrt import keep_packed_weights

    name = CONTRACT.plugin_keep_packed_weights_env
    monkeypatch.delenv(name, raising=False)
    with keep_packed_weights(True) as setting:
        assert setting == "1" and os.environ[name] == "1"
    assert name not in os.environ
    with keep_packed_weights(False) as setting:  # left as the user set it
        assert setting == "" and name not in os.environ
    monkeypatch.setenv(name, "0")
    with keep_packed_weights(True) as setting:
        assert setting == "1"
    assert os.environ[name] == "0"
    with keep_packed_weights(False) as setting:
        assert setting == "0"


@without_tensorrt
def test_bench_takes_keep_packed_weights_and_still_says_tensorrt_is_missing(capsys):
    assert cli.main(["bench", "model.engine", "--keep-packed-weights"]) == EXIT_MISSING_DEPENDENCY
    assert "TensorRT is not installed" in capsys.readouterr().err
