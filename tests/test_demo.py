"""`demo`: the stage logic with stand-in cores, and the real pipeline end to end."""
from __future__ import annotations

import sys
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import List

import pytest

from patcher import cli
from patcher.demo import (FAILED, NOT_DELIVERED, PASSED, SKIPPED, STAGES, WORKDIR_MARKER,
                          prepare_workdir, run_demo)
from patcher.errors import EXIT_CHECK_FAILED, EXIT_INTERNAL, BuildError, UsageError

try:
    from patcher.miniature import create_miniature  # noqa: F401
    HAVE_MINIATURE = True
except ImportError:
    HAVE_MINIATURE = False

needs_miniature = pytest.mark.skipif(not HAVE_MINIATURE,
                                     reason="patcher.miniature is not delivered yet")


@dataclass
class Head:
    name: str
    max_abs: float
    max_rel: float
    tolerance: float
    passed: bool


@dataclass
class Verified:
    heads: List[Head]
    detections_match: bool = True
    passed: bool = True


@dataclass
class Exported:
    onnx_path: Path
    dcn_node_count: int = 3
    metadata: dict = field(default_factory=dict)


@pytest.fixture
def stand_in_cores(monkeypatch):
    """Stand-in apply/build/export/verify modules that record what they were given."""
    calls = {}

    def install(verify_passes=True, build_error=None):
        def apply(tree, *, force=False, sink=None):
            calls["apply"] = Path(tree)
            return types.SimpleNamespace(changed_files=["src/lib/opts.py", "model.py"],
                                         already_applied=False)

        def build(tree, *, sink=None):
            calls["build"] = Path(tree)
            if build_error:
                raise build_error
            return types.SimpleNamespace(summary="dcn_ext: cpu; trt_plugin: no TensorRT")

        def export(tree, task, *, random_weights=False, out=None, sink=None):
            calls["export"] = (Path(tree), task, random_weights, Path(out))
            onnx_path = Path(out) / f"{task}.onnx"
            onnx_path.write_bytes(b"onnx")
            return Exported(onnx_path)

        def verify(onnx_path, *, tree=None, sink=None):
            calls["verify"] = (Path(onnx_path), Path(tree))
            return Verified([Head("hm", 1e-6, 2e-6, 1e-4, True),
                             Head("dep", 3e-3 if not verify_passes else 2e-6, 1e-3, 1e-4,
                                  verify_passes)],
                            detections_match=verify_passes, passed=verify_passes)

        for name, function in (("apply", apply), ("build", build), ("export", export),
                               ("verify", verify)):
            module = types.ModuleType(f"patcher.{name}")
            setattr(module, name, function)
            monkeypatch.setitem(sys.modules, f"patcher.{name}", module)
        return calls

    return install


def statuses(report):
    return {s.name: s.status for s in report.stages}


@needs_miniature
def test_pipeline_passes_every_stage_its_inputs(tmp_path, stand_in_cores):
    calls = stand_in_cores()
    report = run_demo(tmp_path / "demo", task="ddd")
    assert [s.name for s in report.stages] == list(STAGES)
    assert set(statuses(report).values()) == {PASSED}, report.stages
    tree = tmp_path / "demo" / "CenterNet"
    assert calls["apply"] == tree and calls["build"] == tree
    assert calls["export"] == (tree, "ddd", True, tmp_path / "demo" / "out")
    assert calls["verify"] == (tmp_path / "demo" / "out" / "ddd.onnx", tree)
    assert report.exit_code == 0
    assert "2 files patched" in report.stage("apply").detail
    assert "3 DCN nodes" in report.stage("export").detail
    assert [h.name for h in report.heads] == ["hm", "dep"]
    assert report.outputs["ONNX model"] == tmp_path / "demo" / "out" / "ddd.onnx"


@needs_miniature
def test_undelivered_stage_is_said_and_is_not_a_failure(tmp_path, stand_in_cores, monkeypatch):
    stand_in_cores()
    monkeypatch.setitem(sys.modules, "patcher.build", None)  # import fails: not delivered
    report = run_demo(tmp_path / "demo")
    assert statuses(report) == {"miniature": PASSED, "clone": PASSED, "apply": PASSED,
                                "build": NOT_DELIVERED, "export": SKIPPED, "verify": SKIPPED}
    assert report.stage("export").detail == "needs build (not delivered yet)"
    assert report.exit_code == 0


@needs_miniature
def test_failing_stage_stops_the_stages_that_need_it(tmp_path, stand_in_cores):
    stand_in_cores(build_error=BuildError("c++ failed", command=["c++", "x.cpp"]))
    report = run_demo(tmp_path / "demo")
    assert statuses(report)["build"] == FAILED
    assert "c++ failed" in report.stage("build").detail
    assert statuses(report)["export"] == SKIPPED and statuses(report)["verify"] == SKIPPED
    assert report.exit_code == BuildError.exit_code


@needs_miniature
def test_verification_mismatch_fails_the_demo(tmp_path, stand_in_cores, capsys):
    stand_in_cores(verify_passes=False)
    code = cli.main(["demo", "--workdir", str(tmp_path / "demo")])
    assert code == EXIT_CHECK_FAILED
    captured = capsys.readouterr()
    assert "FAIL" in captured.out and "detections DIFFER" in captured.out
    assert "ERROR: the demo failed at verify" in captured.err


@needs_miniature
def test_a_bug_in_a_stage_is_an_internal_error(tmp_path, stand_in_cores, monkeypatch):
    stand_in_cores()

    def broken_apply(tree, **kwargs):
        raise KeyError("oops")

    monkeypatch.setattr(sys.modules["patcher.apply"], "apply", broken_apply)
    report = run_demo(tmp_path / "demo")
    assert report.stage("apply").status == FAILED
    assert report.stage("apply").detail == "internal error: KeyError: 'oops'"
    assert "Traceback" in report.stage("apply").traceback
    assert report.exit_code == EXIT_INTERNAL


def test_workdir_of_someone_else_is_refused_untouched(tmp_path):
    workdir = tmp_path / "mine"
    workdir.mkdir()
    (workdir / "thesis.tex").write_text("keep\n")
    with pytest.raises(UsageError, match="is not empty and was not made by `centernet-patch "
                                         "demo`"):
        prepare_workdir(workdir)
    assert [p.name for p in workdir.iterdir()] == ["thesis.tex"]


def test_previous_demo_workdir_is_emptied(tmp_path):
    workdir = prepare_workdir(tmp_path / "demo")
    (workdir / "out").mkdir()
    (workdir / "out" / "old.onnx").write_bytes(b"old")
    assert prepare_workdir(workdir) == workdir
    assert sorted(p.name for p in workdir.iterdir()) == [WORKDIR_MARKER]


def test_workdir_that_is_a_file_is_refused(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(UsageError, match="exists and is not a directory"):
        prepare_workdir(tmp_path / "f")


@needs_miniature
def test_real_pipeline_end_to_end(tmp_path, capsys):
    """The README's demo command on the real cores (a real build: about a minute and a half
    on 2 cores): every stage passes, the summary and the outputs are printed, exit 0."""
    code = cli.main(["demo", "--workdir", str(tmp_path / "demo")])
    out = capsys.readouterr().out
    assert "centernet-patch demo: ddd on the built-in miniature" in out
    assert code == 0, out
    rows = {line.split("│")[1].strip(): line.split("│")[2].strip()
            for line in out.splitlines() if line.startswith("│") and line.count("│") >= 4}
    assert {stage: rows.get(stage) for stage in STAGES} == {stage: PASSED for stage in STAGES}
    assert "Verification: ONNX Runtime vs PyTorch, per head" in out
    assert "demo passed" in out
    onnx_files = sorted((tmp_path / "demo" / "out").glob("*.onnx"))
    assert [path.name for path in onnx_files] == ["ddd_3dop.onnx"]
    assert "ONNX model" in out and "ddd_3dop.onnx" in out  # the Outputs table
