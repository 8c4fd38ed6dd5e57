"""export and verify on the miniature: every task, both DCN ops, both exporters.

One patched, built miniature per session; small input sizes keep each export a few
seconds. Every export is checked with onnx.checker, and verified against the tree's
PyTorch model in ONNX Runtime (DCNv2 nodes rewritten to the standard DeformConv).
"""
from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from dcn_ext.contract import CONTRACT
from patcher.errors import CheckpointError, TargetError, UsageError
from patcher.export import export
from patcher.onnx_tools import count_dcn_nodes, dcnv2_to_deform_conv, read_metadata
from patcher.progress import RecordingSink
from patcher.verify import random_inputs, run_onnxruntime, verify

DCNV2 = CONTRACT.onnx_op_type
DEFORM_CONV = "DeformConv"  # ONNX's standard op
# Small inputs (multiples of 32) keep each export to seconds on a 2-core CPU.
SIZES = {"ctdet": (64, 64), "multi_pose": (64, 64), "ddd": (64, 192)}


def _apply_and_build(tree: Path) -> None:
    from patcher.apply import apply

    apply(tree)
    dcn = tree / "src" / "lib" / "models" / "networks" / "dcn"
    built = sorted((Path(__file__).resolve().parents[1] / "dcn_ext").glob("_C*.so"))
    if built:
        # apply placed dcn_ext's sources here unchanged, so dcn_ext's own build (made by
        # .ci/run) is this package's build; copying it saves CI a second compile.
        shutil.copy2(built[0], dcn / built[0].name)
    else:
        subprocess.run([sys.executable, "setup.py", "build_ext", "--inplace"], cwd=dcn,
                       check=True, capture_output=True)


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> Path:
    try:
        from patcher.apply import apply  # noqa: F401
        from patcher.miniature import create_miniature
    except ImportError as error:
        pytest.skip(f"the miniature or apply is not available yet: {error}")
    tree = create_miniature(tmp_path_factory.mktemp("mini") / "CenterNet")
    _apply_and_build(Path(tree))
    return Path(tree)


@pytest.fixture(scope="module")
def unpatched_tree(tmp_path_factory) -> Path:
    try:
        from patcher.miniature import create_miniature
    except ImportError as error:
        pytest.skip(f"the miniature is not available yet: {error}")
    return Path(create_miniature(tmp_path_factory.mktemp("raw") / "CenterNet"))


# Each task is exported with both ops and both exporters, across the two archs, in six
# exports rather than twelve (every pairing of task with op, and of task with exporter).
MATRIX = [
    ("ddd", "dla_34", DCNV2, "dynamo"),
    ("ddd", "resdcn_18", DEFORM_CONV, "torchscript"),
    ("ctdet", "resdcn_18", DCNV2, "torchscript"),
    ("ctdet", "dla_34", DEFORM_CONV, "dynamo"),
    ("multi_pose", "dla_34", DCNV2, "torchscript"),
    ("multi_pose", "resdcn_18", DEFORM_CONV, "dynamo"),
]


@pytest.mark.parametrize("task,arch,dcn_op,exporter", MATRIX)
def test_export_then_verify(tree, tmp_path, task, arch, dcn_op, exporter):
    sink = RecordingSink()
    result = export(tree, task, arch=arch, random_weights=True, seed=7, out=tmp_path,
                    input_size=SIZES[task], dcn_op=dcn_op, exporter=exporter, sink=sink)
    assert result.onnx_path == tmp_path / f"{'ddd_3dop' if (task, arch) == ('ddd', 'dla_34') else f'{task}_{arch}'}.onnx"
    model = onnx.load(str(result.onnx_path))
    onnx.checker.check_model(model, full_check=True)
    counts = count_dcn_nodes(model)
    assert counts[dcn_op] == result.dcn_node_count > 0
    assert sum(counts.values()) == counts[dcn_op]

    # one input named `input`, outputs named by head in upstream order, metadata in both places
    meta = read_metadata(model)
    assert [i.name for i in model.graph.input] == ["input"]
    assert [o.name for o in model.graph.output] == list(meta["heads"])
    assert json.loads(result.metadata_path.read_text()) == meta
    assert (meta["task"], meta["arch"], meta["dcn_op"], meta["exporter"]) == (task, arch, dcn_op, exporter)
    assert meta["input_size"] == list(SIZES[task]) and meta["down_ratio"] == 4
    assert meta["weights"] == {"kind": "random", "seed": 7} and meta["torch_version"] == torch.__version__
    assert len(meta["mean"]) == len(meta["std"]) == 3
    assert any("Exporting" in title for title in sink.messages("step"))
    assert not result.onnx_path.with_suffix(".export.log").exists()

    report = verify(result.onnx_path, tree=tree)
    assert report.passed, report.to_json()
    hm = next(h for h in report.heads if h.name == "hm")
    assert hm.max_abs <= 1e-3
    assert report.detections.compared >= 1 and report.detections.unmatched == 0
    assert report.rewritten_dcn_nodes == (result.dcn_node_count if dcn_op == DCNV2 else 0)
    assert json.loads(report.report_path.read_text())["passed"] is True


@pytest.mark.parametrize("exporter", ["dynamo", "torchscript"])
def test_dynamic_batch_equals_single_images(tree, tmp_path, exporter):
    result = export(tree, "ctdet", arch="resdcn_18", random_weights=True, seed=3, out=tmp_path,
                    input_size=(64, 64), dynamic_batch=True, exporter=exporter)
    model = onnx.load(str(result.onnx_path))
    assert read_metadata(model)["batch"] == "dynamic"
    runnable = dcnv2_to_deform_conv(model)
    heads = [o.name for o in model.graph.output]
    images = random_inputs(11, 3, (64, 64))
    together = run_onnxruntime(runnable, images, heads)
    for index in range(3):
        alone = run_onnxruntime(runnable, images[index:index + 1], heads)
        for head in heads:
            np.testing.assert_allclose(together[head][index:index + 1], alone[head],
                                       atol=1e-5, rtol=1e-5, err_msg=head)
    report = verify(result.onnx_path, tree=tree)  # a dynamic model is verified with batch 2
    assert report.passed and "batch 2" in report.inputs


def test_export_from_checkpoint_and_verify_finds_it(tree, tmp_path):
    first = export(tree, "ctdet", arch="resdcn_18", random_weights=True, seed=5,
                   out=tmp_path / "random.onnx", input_size=(64, 64))
    # a checkpoint in upstream's format, DataParallel prefixes included, with other weights
    checkpoint = _checkpoint_from_tree(tree, "ctdet", "resdcn_18", tmp_path / "model.pth",
                                       prefix="module.")
    result = export(tree, "ctdet", arch="resdcn_18", checkpoint=checkpoint,
                    out=tmp_path / "trained.onnx", input_size=(64, 64))
    meta = result.metadata
    assert meta["checkpoint_sha256"] and meta["weights"]["kind"] == "checkpoint"
    assert verify(result.onnx_path).passed  # weights found through the metadata
    a = onnx.load(str(first.onnx_path)).graph.initializer
    b = onnx.load(str(result.onnx_path)).graph.initializer
    assert any(not np.array_equal(onnx.numpy_helper.to_array(x), onnx.numpy_helper.to_array(y))
               for x, y in zip(a, b))
    with pytest.raises(UsageError, match="random weights"):
        verify(first.onnx_path, checkpoint=checkpoint)


def _checkpoint_from_tree(tree: Path, task: str, arch: str, path: Path, *, prefix: str = "",
                          extra: str = "") -> Path:
    """Saves a seeded model of the tree as an upstream checkpoint (in a fresh interpreter)."""
    code = (
        "import sys, torch; sys.path[:0] = ['lib']\n"
        "from opts import opts; from models.model import create_model\n"
        f"opt = opts().init(['{task}', '--arch', '{arch}'])\n"
        "torch.manual_seed(99); m = create_model(opt.arch, opt.heads, opt.head_conv)\n"
        f"sd = {{'{prefix}' + k: v for k, v in m.state_dict().items()}}\n"
        f"{extra}\n"
        f"torch.save({{'epoch': 1, 'state_dict': sd}}, r'{path}')\n")
    env = {**os.environ, "CENTERNET_PATCH_NO_PRETRAINED": "1"}
    subprocess.run([sys.executable, "-c", code], cwd=tree / "src", check=True,
                   capture_output=True, env=env)
    return path


# ---------------------------------------------------------------- errors

def test_unknown_task_and_arch_list_the_valid_ones(tree, tmp_path):
    with pytest.raises(UsageError, match="valid tasks are ctdet, ddd, multi_pose"):
        export(tree, "exdet", random_weights=True, out=tmp_path)
    with pytest.raises(UsageError, match="valid tasks"):
        export(tree, "segmentation", random_weights=True, out=tmp_path)
    with pytest.raises(UsageError, match=r"'res_18' has no DCN layer.*valid archs are dla_34"):
        export(tree, "ctdet", arch="res_18", random_weights=True, out=tmp_path)
    with pytest.raises(UsageError, match="'dla_99' is unknown"):
        export(tree, "ctdet", arch="dla_99", random_weights=True, out=tmp_path)
    with pytest.raises(UsageError, match="needs opset 19"):
        export(tree, "ctdet", random_weights=True, out=tmp_path, dcn_op=DEFORM_CONV, opset=17)
    assert list(tmp_path.iterdir()) == []


def test_checkpoint_for_another_arch_or_head_set(tree, tmp_path):
    other_arch = _checkpoint_from_tree(tree, "ctdet", "dla_34", tmp_path / "dla.pth")
    with pytest.raises(CheckpointError) as caught:
        export(tree, "ctdet", arch="resdcn_18", checkpoint=other_arch, out=tmp_path / "a.onnx",
               input_size=(64, 64))
    assert str(other_arch) in str(caught.value) and "missing from the checkpoint" in str(caught.value)
    other_heads = _checkpoint_from_tree(tree, "ddd", "resdcn_18", tmp_path / "ddd.pth")
    with pytest.raises(CheckpointError) as caught:
        export(tree, "ctdet", arch="resdcn_18", checkpoint=other_heads, out=tmp_path / "b.onnx",
               input_size=(64, 64))
    message = str(caught.value)
    assert "wrong shape" in message and "hm." in message  # 3 ddd classes vs 80 coco classes
    assert "unexpected in the checkpoint" in message and "dep." in message
    assert not (tmp_path / "a.onnx").exists() and not (tmp_path / "b.onnx").exists()


def test_damaged_and_unsafe_checkpoints(tree, tmp_path):
    good = _checkpoint_from_tree(tree, "ctdet", "resdcn_18", tmp_path / "good.pth")
    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(good.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match="truncated, corrupt") as caught:
        export(tree, "ctdet", arch="resdcn_18", checkpoint=truncated, out=tmp_path, input_size=(64, 64))
    assert str(truncated) in str(caught.value)
    unsafe = _checkpoint_from_tree(tree, "ctdet", "resdcn_18", tmp_path / "unsafe.pth",
                                   extra="import numpy; sd['extra_note'] = numpy.float64(1)")
    with pytest.raises(CheckpointError, match="needs full unpickling") as caught:
        export(tree, "ctdet", arch="resdcn_18", checkpoint=unsafe, out=tmp_path, input_size=(64, 64))
    assert "--trust-checkpoint" in caught.value.tip


def test_unpatched_tree_is_refused(unpatched_tree, tmp_path):
    with pytest.raises(TargetError, match="is not patched") as caught:
        export(unpatched_tree, "ddd", random_weights=True, out=tmp_path)
    assert "centernet-patch apply" in caught.value.tip
    with pytest.raises(TargetError, match="not a CenterNet tree"):
        export(tmp_path, "ddd", random_weights=True, out=tmp_path)


def test_output_path_not_writable(tree, tmp_path):
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        # root ignores directory permissions; sysfs refuses new files even to root
        with pytest.raises(UsageError, match=r"output path /sys/m.onnx is not writable"):
            export(tree, "ctdet", random_weights=True, out=Path("/sys/m.onnx"))
        return
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(stat.S_IRUSR | stat.S_IXUSR)
    try:
        with pytest.raises(UsageError, match="is not writable"):
            export(tree, "ctdet", random_weights=True, out=locked / "m.onnx")
    finally:
        locked.chmod(stat.S_IRWXU)


def test_output_folder_missing_or_not_onnx(tree, tmp_path):
    with pytest.raises(UsageError, match="does not exist"):
        export(tree, "ctdet", random_weights=True, out=tmp_path / "no" / "such" / "m.onnx")
    with pytest.raises(UsageError, match="ending in .onnx"):
        export(tree, "ctdet", random_weights=True, out=tmp_path / "m.txt")


def test_recipe_script_writes_ddd_3dop(tree, tmp_path):
    src = tree / "src"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    done = subprocess.run([sys.executable, "export_onnx_ddd.py", "--task", "ddd",
                           "--input_h", "64", "--input_w", "192",
                           "--output", str(tmp_path / "ddd_3dop.onnx")],
                          cwd=src, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    model = onnx.load(str(tmp_path / "ddd_3dop.onnx"))
    meta = read_metadata(model)
    assert meta["task"] == "ddd" and meta["arch"] == "dla_34"
    assert meta["weights"] == {"kind": "random", "seed": 317}
    assert count_dcn_nodes(model)[DCNV2] > 0
    assert verify(tmp_path / "ddd_3dop.onnx").passed


def test_cli_export_and_verify_exit_codes(tree, tmp_path, capsys):
    from patcher.cli import main
    from patcher.errors import EXIT_CHECK_FAILED

    out = tmp_path / "cli.onnx"
    assert main(["export", "ctdet", "--repo", str(tree), "--arch", "resdcn_18",
                 "--random-weights", "--seed", "4", "--input-size", "64x64",
                 "--out", str(out)]) == 0
    assert main(["verify", str(out), "--report", str(tmp_path / "ok.json")]) == 0
    printed = capsys.readouterr().out
    assert "hm" in printed and "pass" in printed

    # the verifier must catch a wrong model: perturb one weight of the wh head's last conv
    model = onnx.load(str(out))
    target = next(t for t in model.graph.initializer
                  if t.name.startswith(("network.wh.", "wh.")) and len(t.dims) == 4 and t.dims[0] == 2)
    values = onnx.numpy_helper.to_array(target).copy()
    values.flat[0] += 0.5
    target.CopyFrom(onnx.numpy_helper.from_array(values, target.name))
    onnx.save(model, str(out))
    assert main(["verify", str(out), "--report", str(tmp_path / "bad.json")]) == EXIT_CHECK_FAILED
    report = json.loads((tmp_path / "bad.json").read_text())
    assert report["passed"] is False
    assert [h["passed"] for h in report["heads"]] == [True, False, True]  # hm, wh, reg

    assert main(["export", "exdet", "--repo", str(tree), "--random-weights"]) == 2
    assert "valid tasks are ctdet, ddd, multi_pose" in capsys.readouterr().err


def test_tensorrt_runtime_runs_or_says_it_is_absent(tree, tmp_path):
    from patcher.errors import MissingDependencyError

    result = export(tree, "ctdet", arch="resdcn_18", random_weights=True, seed=4, out=tmp_path,
                    input_size=(64, 64))
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        with pytest.raises(MissingDependencyError, match="TensorRT is not installed"):
            verify(result.onnx_path, runtime="tensorrt")
        pytest.skip("TensorRT is not installed: checked the message only")
    assert verify(result.onnx_path, runtime="tensorrt").passed
