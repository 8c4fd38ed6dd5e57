"""`doctor`: findings checked against independent facts of this machine."""
from __future__ import annotations

import importlib.util
import json
import shutil
import sys

import pytest

from patcher import cli, doctor
from patcher.doctor import BROKEN, MISSING, OK, diagnose


@pytest.fixture(scope="module")
def report():
    return diagnose()


def machine_has_gpu() -> bool:
    import torch

    return bool(shutil.which("nvidia-smi")) or torch.cuda.is_available()


def test_every_component_is_reported_once(report):
    names = [f.component for f in report.findings]
    assert len(names) == len(set(names))
    for component in ("Python", "git", "PyTorch", "PyTorch CUDA build", "torch.cuda", "nvcc",
                      "C++ compiler", "CMake", "ninja", "ONNX", "onnxscript", "ONNX Runtime",
                      "TensorRT Python", "TensorRT headers", "libnvinfer", "GPU"):
        finding = report[component]
        assert finding.status in (OK, MISSING, BROKEN)
        assert finding.detail
        if not finding.ok:
            assert finding.when_missing, f"{component} does not say what its absence disables"


def test_torch_findings_match_torch_itself(report):
    import torch

    assert report["PyTorch"].detail == torch.__version__
    assert report["PyTorch CUDA build"].ok == bool(torch.version.cuda)
    assert report["torch.cuda"].ok == torch.cuda.is_available()


def test_onnxruntime_runs_deform_conv(report):
    import onnxruntime

    finding = report["ONNX Runtime"]
    assert finding.ok, finding.detail
    assert finding.detail.startswith(onnxruntime.__version__)
    assert "runs DeformConv (opset 19)" in finding.detail


def test_cpu_machine_reports_tensorrt_and_gpu_absent(report):
    if machine_has_gpu() or importlib.util.find_spec("tensorrt"):
        pytest.skip("this machine has a GPU or TensorRT: the CPU-machine report does not apply")
    assert report["TensorRT Python"].status == MISSING
    assert report["libnvinfer"].status == MISSING
    assert report["GPU"].status == MISSING
    assert "TensorRT engines" in report["GPU"].when_missing
    blockers = report.stage_blockers()
    assert "GPU" in blockers["build-engine"] and "TensorRT Python" in blockers["build-engine"]
    assert blockers["export"] == [] and blockers["verify"] == []


def test_cli_draws_the_tables(capsys):
    assert cli.main(["doctor"]) == 0
    out = capsys.readouterr().out
    assert "What this machine has" in out and "Stages" in out
    for component in ("TensorRT headers", "libnvinfer", "ONNX Runtime", "nvcc", "GPU"):
        assert component in out
    if not machine_has_gpu():
        gpu_line = next(line for line in out.splitlines() if line.startswith("│ GPU "))
        assert "missing" in gpu_line and "no NVIDIA GPU visible" in gpu_line


def test_cli_json(capsys):
    assert cli.main(["-q", "doctor", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    components = {f["component"]: f for f in data["findings"]}
    assert components["Python"]["status"] == OK
    assert set(data["stages"]) == set(doctor.STAGES)
    assert data["stages"]["apply"]["ready"] is True


def write_header(include, body: str):
    include.mkdir(parents=True)
    (include / "NvInfer.h").write_text("// test header\n")
    (include / "NvInferVersion.h").write_text(body)


def test_tensorrt_headers_found_under_tensorrt_root(tmp_path, monkeypatch):
    # TensorRT 10+ spells the version through *_ENTERPRISE aliases
    write_header(tmp_path / "trt" / "include",
                 "#define TRT_MAJOR_ENTERPRISE 10\n#define TRT_MINOR_ENTERPRISE 3\n"
                 "#define TRT_PATCH_ENTERPRISE 7\n"
                 "#define NV_TENSORRT_MAJOR TRT_MAJOR_ENTERPRISE //!< major\n"
                 "#define NV_TENSORRT_MINOR TRT_MINOR_ENTERPRISE\n"
                 "#define NV_TENSORRT_PATCH TRT_PATCH_ENTERPRISE\n")
    (tmp_path / "trt" / "lib").mkdir()
    (tmp_path / "trt" / "lib" / "libnvinfer.so.10").write_bytes(b"")
    monkeypatch.setenv("TENSORRT_ROOT", str(tmp_path / "trt"))
    assert doctor.find_tensorrt_headers() == (tmp_path / "trt" / "include", "10.3.7")
    finding = doctor.check_tensorrt_headers()
    assert finding.ok and "TensorRT 10.3.7" in finding.detail
    assert doctor.find_libnvinfer() == tmp_path / "trt" / "lib" / "libnvinfer.so.10"


def test_plain_version_macros(tmp_path):
    write_header(tmp_path / "inc", "#define NV_TENSORRT_MAJOR 8\n#define NV_TENSORRT_MINOR 6\n"
                                   "#define NV_TENSORRT_PATCH 1\n")
    assert doctor.read_tensorrt_version(tmp_path / "inc" / "NvInferVersion.h") == "8.6.1"


def test_tensorrt_headers_absent(tmp_path, monkeypatch):
    monkeypatch.setattr(doctor, "tensorrt_include_candidates", lambda: [tmp_path / "none"])
    finding = doctor.check_tensorrt_headers()
    assert finding.status == MISSING
    assert str(tmp_path / "none") in finding.detail
    assert "TENSORRT_ROOT" in finding.when_missing


def test_missing_onnxruntime_blocks_verify(monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import raises ImportError
    finding = doctor.check_onnxruntime()
    assert finding.status == MISSING and "cannot import onnxruntime" in finding.detail
    assert doctor.DoctorReport([finding]).stage_blockers()["verify"] == ["ONNX Runtime"]


class FakeRuntime:
    """An onnxruntime stand-in whose session returns ``result`` or raises ``error``."""

    def __init__(self, result=None, error=None):
        self.result, self.error = result, error

    def InferenceSession(self, *args, **kwargs):
        runtime = self

        class Session:
            def run(self, outputs, feeds):
                if runtime.error:
                    raise runtime.error
                return [runtime.result(feeds)]

        return Session()


def test_deform_conv_not_implemented_is_reported():
    works, detail = doctor.deform_conv_runs(
        FakeRuntime(error=RuntimeError("Could not find an implementation for DeformConv(19)")))
    assert not works and "Could not find an implementation for DeformConv" in detail


def test_deform_conv_wrong_numbers_are_reported():
    import numpy as np

    works, detail = doctor.deform_conv_runs(
        FakeRuntime(result=lambda feeds: np.zeros((1, 3, 3, 3), np.float32)))
    assert not works and "disagrees with a plain convolution" in detail


def test_git_absent(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    finding = doctor.check_git()
    assert finding.status == MISSING and "apply" in finding.needed_for
