"""Reproduce the upstream export on a real CenterNet checkout: apply -> build -> export -> verify.

Skipped unless CENTERNET_UPSTREAM names a CenterNet clone (a path) or a git URL; the
GitHub Actions workflow .github/workflows/upstream-reproduction.yml runs it against the
official repository, at the pinned commit and at the head of master, so upstream drift
fails that job. The clone is made in a temporary folder: a local clone named by
CENTERNET_UPSTREAM is read, never modified.

Environment:
  CENTERNET_UPSTREAM             path or URL of CenterNet (required)
  CENTERNET_UPSTREAM_REF         commit/branch to check out (default: the clone's HEAD)
  CENTERNET_UPSTREAM_INPUT_SIZE  HxW for every export (default: each task's upstream size)

Random weights only (the model zoo is on Google Drive; the test has no credentials).
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import onnx
import pytest

from dcn_ext.contract import CONTRACT
from patcher.export import DCN_ARCHS, TASKS, export, parse_input_size
from patcher.onnx_tools import count_dcn_nodes, read_metadata
from patcher.verify import verify

UPSTREAM = os.environ.get("CENTERNET_UPSTREAM", "")
pytestmark = pytest.mark.skipif(
    not UPSTREAM, reason="CENTERNET_UPSTREAM is not set: it names the CenterNet clone or URL "
                         "to reproduce the upstream export on (see .github/workflows/"
                         "upstream-reproduction.yml)")

# DCN layers per arch in upstream's networks (16 in DLA-34's IDA-up, 3 in ResNet's deconvs).
EXPECTED_DCN_NODES = {"dla_34": 16, "resdcn_18": 3, "resdcn_34": 3, "resdcn_50": 3, "resdcn_101": 3}
SEED = 2019


def _input_size(task):
    override = os.environ.get("CENTERNET_UPSTREAM_INPUT_SIZE")
    return parse_input_size(override) if override else TASKS[task].input_size


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> Path:
    from patcher.apply import apply
    from patcher.clone import locate_or_clone

    source = UPSTREAM
    if Path(source).expanduser().is_dir():  # a local clone: clone it again, never touch it
        source = Path(source).expanduser().resolve().as_uri()
    target = tmp_path_factory.mktemp("upstream") / "CenterNet"
    locate_or_clone(target, upstream=source, ref=os.environ.get("CENTERNET_UPSTREAM_REF") or None)
    apply(target)
    try:
        from patcher.build import build
    except ImportError:
        dcn = target / "src" / "lib" / "models" / "networks" / "dcn"
        subprocess.run([sys.executable, "setup.py", "build_ext", "--inplace"], cwd=dcn, check=True)
    else:
        build(target)
    return target


@pytest.mark.parametrize("arch", DCN_ARCHS)
@pytest.mark.parametrize("task", list(TASKS))
def test_export_and_verify(tree, tmp_path, task, arch):
    result = export(tree, task, arch=arch, random_weights=True, seed=SEED, out=tmp_path,
                    input_size=_input_size(task))
    model = onnx.load(str(result.onnx_path))
    onnx.checker.check_model(model, full_check=True)
    assert count_dcn_nodes(model)[CONTRACT.onnx_op_type] == EXPECTED_DCN_NODES[arch]
    assert list(read_metadata(model)["heads"]) == [o.name for o in model.graph.output]
    print(f"{task} {arch}: export {result.wall_time_s:.1f} s, {result.dcn_node_count} DCN nodes")
    report = verify(result.onnx_path, tree=tree)
    for head in report.heads:
        print(f"  {head.name}: max abs {head.max_abs:.3g} (atol {head.tolerance.atol:g}) "
              f"{'pass' if head.passed else 'FAIL'}")
    assert report.passed, report.to_json()


def test_standard_deform_conv_export(tree, tmp_path):
    result = export(tree, "ddd", random_weights=True, seed=SEED, out=tmp_path,
                    input_size=_input_size("ddd"), dcn_op="DeformConv", exporter="torchscript")
    assert result.dcn_node_count == EXPECTED_DCN_NODES["dla_34"]
    assert verify(result.onnx_path, tree=tree).passed


def test_recipe_script(tree):
    height, width = _input_size("ddd")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    done = subprocess.run([sys.executable, "export_onnx_ddd.py", "--task", "ddd",
                           "--input_h", str(height), "--input_w", str(width)],
                          cwd=tree / "src", env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    model = onnx.load(str(tree / "src" / "ddd_3dop.onnx"))
    assert count_dcn_nodes(model)[CONTRACT.onnx_op_type] == EXPECTED_DCN_NODES["dla_34"]
    assert verify(tree / "src" / "ddd_3dop.onnx").passed
