"""The plugin's GPU tools (trt_plugin/tools): the parts that run without a GPU."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

from dcn_ext.contract import CONTRACT

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "trt_plugin" / "tools"))

import enqueue_bench  # noqa: E402
import gpu_check  # noqa: E402


def test_harness_environment_sets_or_removes_the_keep_setting(monkeypatch):
    name = CONTRACT.plugin_keep_packed_weights_env
    monkeypatch.setenv(name, "1")
    monkeypatch.setenv("UNRELATED_SETTING", "kept")
    assert name not in gpu_check.plugin_environment(None)  # the default run really is the default
    assert gpu_check.plugin_environment("0")[name] == "0"
    monkeypatch.delenv(name)
    assert gpu_check.plugin_environment("1")[name] == "1"
    assert gpu_check.plugin_environment(None)["UNRELATED_SETTING"] == "kept"


def test_enqueue_bench_refuses_a_batch_below_one(tmp_path, capsys):
    with pytest.raises(SystemExit) as exited:
        enqueue_bench.main(["--build", str(tmp_path), "--work", str(tmp_path), "--batch", "0"])
    assert exited.value.code == 2
    assert "--batch: got: 0 expected: >= 1" in capsys.readouterr().err


def test_enqueue_bench_writes_the_harness_case_it_times(tmp_path):
    case = gpu_check.Case("probe", 64, 64, 8, 6, (3, 3), (1, 1), (1, 1), (1, 1), 1, 1, True, 2.0)
    enqueue_bench.write_layer(tmp_path, case, "float16", 2, channels_last=True)
    spec = (tmp_path / "case.txt").read_text().splitlines()
    assert spec[:3] == ["dtype float16", "layout channels_last", f"time_enqueues {enqueue_bench.TIMED_ENQUEUES}"]
    assert spec.index("problem layer") > max(i for i, line in enumerate(spec) if line.startswith("field "))
    shapes = {line.split()[1]: [int(d) for d in line.split()[2:]] for line in spec if line.startswith("input ")}
    assert list(shapes) == list(CONTRACT.inputs)
    assert shapes[CONTRACT.inputs[0]] == [2, 64, 8, 6] and shapes[CONTRACT.inputs[3]] == [64, 64, 3, 3]
    # x is stored channels-last: the same bytes count, 2 bytes an element
    assert (tmp_path / f"layer.{CONTRACT.inputs[0]}.bin").stat().st_size == 2 * 64 * 8 * 6 * 2
