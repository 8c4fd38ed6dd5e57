"""patcher.build and `centernet-patch build`: options, failures, the log, the load check.

The real compile of the placed package is exercised by the export tests (they build the
patched miniature); here a stand-in setup.py puts the already-built library in place so
the orchestration is tested in seconds.
"""
from __future__ import annotations

import shutil
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from patcher.build import DCN_PACKAGE_DIR, build, normalize_cuda_arch
from patcher.errors import BuildError, MissingDependencyError, TargetError, UsageError
from patcher.progress import RecordingSink

REPO = Path(__file__).resolve().parents[1]
DCN_SOURCE = REPO / "dcn_ext"


@pytest.mark.parametrize("given, expected", [
    ("9.0", "9.0"), ("90", "9.0"), ("8.6;9.0", "8.6;9.0"), ("86 90+PTX", "8.6;9.0+PTX"),
    ("12.0", "12.0"), ("120", "12.0"), ("9.0a", "9.0a"), ("90a", "9.0a"), ("8.0;90A+PTX", "8.0;9.0a+PTX"),
])
def test_normalize_cuda_arch(given, expected):
    assert normalize_cuda_arch(given) == expected


@pytest.mark.parametrize("bad", ["sm_90", "9", "", "9.0;x"])
def test_normalize_cuda_arch_rejects(bad):
    with pytest.raises(UsageError, match="--cuda-arch is not valid: got:"):
        normalize_cuda_arch(bad)


def test_not_a_patched_tree(tmp_path):
    with pytest.raises(TargetError, match="is not a patched CenterNet tree") as caught:
        build(tmp_path)
    assert "centernet-patch apply" in caught.value.tip


def test_bad_cuda_mode(tmp_path):
    with pytest.raises(UsageError, match=r"--cuda is not valid: got: 'maybe'"):
        build(tmp_path, cuda="maybe")


def _placed_package(tree: Path, setup_py: str) -> Path:
    """A copy of dcn_ext at the placed location, with ``setup_py`` as its build script."""
    dcn = tree / DCN_PACKAGE_DIR
    shutil.copytree(DCN_SOURCE, dcn, ignore=shutil.ignore_patterns(
        "build", "*.so", "__pycache__", "setup.py"))
    (dcn / "setup.py").write_text(textwrap.dedent(setup_py))
    return dcn


def test_failed_build_reports_command_and_log_tail(tmp_path):
    _placed_package(tmp_path, """
        import sys
        print("compiling csrc/modulated_deform_conv.cpp")
        print("csrc/modulated_deform_conv.cpp:12: error: expected ';' before '}' token")
        sys.exit(1)
    """)
    with pytest.raises(BuildError) as caught:
        build(tmp_path, cuda="off")
    error = caught.value
    assert "building the DCN extension failed (exit code 1)" in str(error)
    assert error.command[-2:] == ["build_ext", "--inplace"]
    assert "error: expected ';'" in error.log_tail
    log = Path(error.log_path)
    assert log.is_file() and "error: expected ';'" in log.read_text()
    assert "last lines of the log" in str(error)


def _prebuilt_library() -> Path:
    built = sorted(DCN_SOURCE.glob("_C*.so"))
    if not built:
        pytest.skip("dcn_ext is not built in the repository (cd dcn_ext && python setup.py "
                    "build_ext --inplace)")
    return built[0]


def test_successful_build_loads_the_op_and_skips_plugin_without_headers(tmp_path):
    library = _prebuilt_library()
    dcn = _placed_package(tmp_path, f"""
        # stand-in for the compiler: records what build() asked for, places the library
        import os, shutil
        print("DCN_EXT_CUDA=" + os.environ["DCN_EXT_CUDA"])
        shutil.copy({str(library)!r}, {library.name!r})
    """)
    empty_tensorrt = tmp_path / "no-tensorrt"
    empty_tensorrt.mkdir()
    sink = RecordingSink()
    report = build(tmp_path, cuda="off", tensorrt_root=empty_tensorrt, sink=sink)
    assert report.extension_path == dcn / library.name
    assert report.cuda is False and report.cuda_arch is None
    log = report.log_path.read_text()
    assert "DCN_EXT_CUDA=off" in log and "build_ext --inplace" in log
    assert report.plugin_library is None
    assert report.plugin_skipped == "TensorRT plugin skipped: headers not found (set TENSORRT_ROOT)"
    assert report.plugin_skipped in sink.messages("warn")


def test_library_that_does_not_load_is_a_build_error(tmp_path):
    _placed_package(tmp_path, """
        open("_C.cpython-311-x86_64-linux-gnu.so", "wb").write(b"not a shared library")
        open("_C.so", "wb").write(b"not a shared library")
    """)
    with pytest.raises(BuildError, match="was built but does not load"):
        build(tmp_path, cuda="off", tensorrt_root=tmp_path)


@pytest.mark.skipif(torch.version.cuda is not None, reason="torch has CUDA here")
def test_cuda_on_without_cuda_torch_is_a_missing_dependency(tmp_path):
    _placed_package(tmp_path, "raise SystemExit('must not run')\n")
    with pytest.raises(MissingDependencyError, match="cannot build the CUDA kernels: torch "):
        build(tmp_path, cuda="on")


def test_cli_build_reports_a_missing_tree(tmp_path, capsys):
    from patcher.cli import main

    code = main(["build", str(tmp_path / "nowhere")])
    assert code == TargetError.exit_code
    assert "is not a patched CenterNet tree" in capsys.readouterr().err


def test_cli_build_rejects_bad_cuda_option(tmp_path, capsys):
    from patcher.cli import main

    assert main(["build", str(tmp_path), "--cuda", "sometimes"]) == 2
    assert "invalid choice: 'sometimes'" in capsys.readouterr().err


def test_setup_py_refuses_a_bad_cuda_mode():
    import subprocess

    done = subprocess.run([sys.executable, "setup.py", "build_ext", "--inplace"],
                          cwd=DCN_SOURCE, env={**__import__("os").environ,
                                               "DCN_EXT_CUDA": "sometimes"},
                          capture_output=True, text=True)
    assert done.returncode != 0
    assert "DCN_EXT_CUDA is not valid: got: 'sometimes'" in done.stderr + done.stdout
