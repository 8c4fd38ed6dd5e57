"""The apply engine on the miniature: exact changes, idempotent, all-or-nothing, reversible."""
from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from patcher import apply as core
from codemod_helpers import freeze_placed_sources
from patcher.codemods.placed_files import PlacedFiles
from patcher.errors import DirtyTreeError, DriftError, LockError, PatchError, SourceParseError
from patcher.miniature import create_miniature
from patcher.progress import RecordingSink

MODIFIED = ["src/lib/models/model.py", "src/lib/models/networks/pose_dla_dcn.py",
            "src/lib/models/networks/resnet_dcn.py", "src/lib/opts.py"]


def git(tree: Path, *args: str) -> str:
    return subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t.invalid", *args],
                          cwd=tree, check=True, capture_output=True, text=True).stdout


def porcelain(tree: Path) -> str:
    return git(tree, "status", "--porcelain", "--ignored", "--untracked-files=all")


def snapshot(tree: Path) -> dict:
    return {p.relative_to(tree).as_posix(): p.read_bytes() for p in sorted(tree.rglob("*"))
            if p.is_file() and ".git" not in p.relative_to(tree).parts}


@pytest.fixture(autouse=True)
def frozen_placed(monkeypatch, tmp_path):
    return freeze_placed_sources(monkeypatch, tmp_path / "placed-sources")


@pytest.fixture
def tree(tmp_path) -> Path:
    return create_miniature(tmp_path / "CenterNet")


def placed_paths() -> list:
    return sorted(path for placed in core.PLACED for path in placed.files())


def test_apply_again_check_status_revert(tree):
    pristine = snapshot(tree)
    report = core.apply(tree)
    assert not report.already_applied
    assert sorted(report.changed_files) == sorted(MODIFIED + placed_paths())

    # exactly the intended tracked files changed; the rest is added
    assert git(tree, "diff", "--name-only").split() == MODIFIED
    untracked = git(tree, "ls-files", "--others", "--exclude-standard").split()
    assert sorted(untracked) == placed_paths()
    assert (tree / core.MANIFEST_DIR).is_dir() and not (tree / core.LOCK_FILE).exists()

    manifest = json.loads((tree / core.MANIFEST_DIR / core.MANIFEST_FILE).read_text())
    assert manifest["tool"] == "centernet-patch" and manifest["version"]
    opts_entry = manifest["files"]["src/lib/opts.py"]
    assert opts_entry["original_sha256"] == hashlib.sha256(
        pristine["src/lib/opts.py"]).hexdigest()
    assert opts_entry["new_sha256"] == hashlib.sha256(
        (tree / "src/lib/opts.py").read_bytes()).hexdigest()
    assert opts_entry["by"] == ["task_argument"]

    patched = snapshot(tree)
    again = core.apply(tree)
    assert again.already_applied and again.changed_files == []
    assert snapshot(tree) == patched
    assert core.check(tree) is True
    states = {name: state for name, state, _ in core.status(tree)}
    assert states == {"dcn_import": "applied", "task_argument": "applied",
                      "unused_torchvision": "applied", "pretrained_offline": "applied",
                      "dcn_package": "applied", "export_scripts": "applied",
                      "iter_filter": "not-needed"}

    # a build of the dcn package in place and Python caches must not survive --revert
    dcn = tree / "src/lib/models/networks/dcn"
    (dcn / "build" / "temp").mkdir(parents=True)
    (dcn / "build" / "temp" / "x.o").write_bytes(b"\0")
    (dcn / "_C.cpython-311-x86_64-linux-gnu.so").write_bytes(b"\0")
    (dcn / "modules" / "__pycache__").mkdir()
    (dcn / "modules" / "__pycache__" / "deform_conv.cpython-311.pyc").write_bytes(b"\0")

    reverted = core.revert(tree)
    assert sorted(reverted.restored_files) == MODIFIED
    assert sorted(reverted.removed_files) == placed_paths()
    assert porcelain(tree) == ""
    assert snapshot(tree) == pristine
    assert core.revert(tree).nothing_to_revert


def test_diff_and_plan_write_nothing(tree):
    plan = core.plan(tree)
    diff = plan.diff()
    assert "-from .DCNv2.dcn_v2 import DCN\n" in diff
    assert "+from .dcn.modules.deform_conv import ModulatedDeformConvPack as DCN\n" in diff
    assert "-import torchvision.models as models\n" in diff
    assert "Only in the patched tree: src/lib/models/networks/dcn/setup.py" in diff
    assert porcelain(tree) == ""
    assert core.check(tree) is False
    states = {name: state for name, state, _ in core.status(tree)}
    assert states["task_argument"] == "pending" and states["dcn_package"] == "pending"


def test_failure_between_writes_leaves_the_tree_as_it_was(tree, monkeypatch):
    real_write = core._atomic_write
    calls = []

    def failing_write(path, data, mode=None):
        calls.append(path)
        if len(calls) == 8:  # originals, some target files and placed files are written
            raise OSError(28, "No space left on device", str(path))
        real_write(path, data, mode)

    monkeypatch.setattr(core, "_atomic_write", failing_write)
    with pytest.raises(PatchError, match="every file was put back as it was"):
        core.apply(tree)
    assert any(str(p).startswith(str(tree / "src")) for p in calls[:7])
    assert porcelain(tree) == ""  # no patched file, manifest, placed file, lock or temp file


def test_dirty_target_file_is_refused_unless_forced(tree):
    opts = tree / "src/lib/opts.py"
    opts.write_text(opts.read_text() + "# my local edit\n")
    edited = opts.read_bytes()
    with pytest.raises(DirtyTreeError, match=r"uncommitted changes: src/lib/opts.py; nothing "
                                             r"was written") as error:
        core.apply(tree)
    assert "--force" in error.value.tip
    assert porcelain(tree) == " M src/lib/opts.py\n"

    core.apply(tree, force=True)
    assert b"# my local edit" in opts.read_bytes() and b"'--task'" in opts.read_bytes()
    core.revert(tree)
    assert opts.read_bytes() == edited  # restored as it was before apply, edit included


def test_revert_refuses_files_edited_after_apply(tree):
    core.apply(tree)
    model = tree / "src/lib/models/model.py"
    model.write_text(model.read_text() + "# edited after apply\n")
    with pytest.raises(DirtyTreeError, match="changed since they were patched: "
                                             "src/lib/models/model.py"):
        core.revert(tree)
    core.revert(tree, force=True)
    assert porcelain(tree) == ""


def test_drift_writes_nothing_and_names_file_target_and_finding(tree):
    resnet = tree / "src/lib/models/networks/resnet_dcn.py"
    resnet.write_text(resnet.read_text().replace("from .DCNv2.dcn_v2 import DCN",
                                                 "from .dcn_v3 import DCN3 as DCN"))
    git(tree, "commit", "-qam", "a fork")
    with pytest.raises(DriftError) as error:
        core.apply(tree)
    assert str(error.value).startswith(
        "src/lib/models/networks/resnet_dcn.py: dcn_import: expected an import of DCN from "
        "the legacy DCNv2 extension")
    assert "found `from .dcn_v3 import DCN3 as DCN` (line 14)" in str(error.value)
    assert porcelain(tree) == ""
    states = {name: state for name, state, _ in core.status(tree)}
    assert states["dcn_import"] == "drifted" and states["task_argument"] == "pending"


def test_unparsable_file_writes_nothing(tree):
    (tree / "src/lib/models/model.py").write_text("def broken(:\n")
    git(tree, "commit", "-qam", "broken")
    with pytest.raises(SourceParseError, match=r"src/lib/models/model.py does not parse"):
        core.apply(tree)
    assert porcelain(tree) == ""


def test_a_placed_file_never_overwrites_one_of_the_tree(tree):
    (tree / "src/export_onnx_ddd.py").write_text("# the user's own script\n")
    git(tree, "add", "src/export_onnx_ddd.py")
    git(tree, "commit", "-qm", "own script")
    with pytest.raises(PatchError, match="placing src/export_onnx_ddd.py would overwrite"):
        core.apply(tree)
    assert porcelain(tree) == ""


def test_lock_held_by_a_running_process_fails_clearly(tree):
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        (tree / core.LOCK_FILE).write_text(json.dumps(
            {"pid": holder.pid, "host": socket.gethostname(), "since": "now"}))
        with pytest.raises(LockError, match=rf"locked by another centernet-patch \(pid "
                                            rf"{holder.pid} on"):
            core.apply(tree, lock_timeout=0.3)
        assert (tree / core.LOCK_FILE).exists()  # someone else's lock is never removed
    finally:
        holder.kill()
        holder.wait()
    sink = RecordingSink()
    core.apply(tree, sink=sink, lock_timeout=0.3)  # the holder is gone: a stale lock
    assert any("stale lock" in message for message in sink.messages("warn"))
    assert not (tree / core.LOCK_FILE).exists()


def test_patch_torch_keeps_a_backup_and_revert_restores_it(tree, tmp_path):
    function_py = tmp_path / "site" / "torch" / "autograd" / "function.py"
    function_py.parent.mkdir(parents=True)
    (tmp_path / "site" / "torch" / "version.py").write_text("__version__ = '1.0.1'\n")
    original = textwrap.dedent("""\
        def _iter_filter(condition):
            def _iter(obj):
                if condition(obj):
                    yield obj
                elif obj is None:
                    return
            return _iter
        """).encode()
    function_py.write_bytes(original)
    report = core.apply(tree, patch_torch=function_py.parent.parent)
    assert str(function_py) in report.changed_files
    assert f"--- {function_py}\n+++ {function_py}\n" in core.Plan(
        tree, changes=report.changes).diff()
    assert b"elif isinstance(obj, int):" in function_py.read_bytes()
    backup = Path(str(function_py) + core.TORCH_BACKUP_SUFFIX)
    assert backup.read_bytes() == original
    assert dict((n, s) for n, s, _ in core.status(tree))["iter_filter"] == "applied"
    core.revert(tree)
    assert function_py.read_bytes() == original and not backup.exists()
    assert porcelain(tree) == ""


def test_patch_torch_on_torch_2_changes_nothing(tree, tmp_path):
    function_py = tmp_path / "torch" / "autograd" / "function.py"
    function_py.parent.mkdir(parents=True)
    (tmp_path / "torch" / "version.py").write_text("__version__ = '2.13.0'\n")
    function_py.write_text("def _iter_filter(condition):\n    pass\n")
    plan = core.plan(tree, patch_torch=function_py)
    assert str(function_py) not in plan.changed_files
    assert plan.notes == ["iter_filter: not needed on torch 2.13.0: int arguments reach "
                          "`symbolic` as Python ints on torch 2.x; _iter_filter only serves "
                          "NestedIOFunction"]


def test_missing_or_empty_patches_dir_places_nothing(tmp_path):
    empty = tmp_path / "patches"
    empty.mkdir()
    for source in (empty, tmp_path / "absent"):
        placed = PlacedFiles("export_scripts", "", lambda s=source: s, "", required=False)
        assert placed.files() == {}
    (empty / "src").mkdir()
    (empty / "src" / "export_x.py").write_text("print()\n")
    (empty / "src" / "__pycache__").mkdir()
    (empty / "src" / "__pycache__" / "export_x.cpython-311.pyc").write_bytes(b"\0")
    placed = PlacedFiles("export_scripts", "", lambda: empty, "", required=False)
    assert placed.files() == {"src/export_x.py": b"print()\n"}
    with pytest.raises(PatchError, match="source directory .* is missing"):
        PlacedFiles("dcn", "", lambda: tmp_path / "absent", "x", required=True).files()


def test_not_a_centernet_tree(tmp_path):
    from patcher.errors import TargetError

    with pytest.raises(TargetError, match="is not a CenterNet tree: missing src/lib/opts.py"):
        core.plan(tmp_path)


def test_a_write_failing_half_way_leaves_no_temporary_file(tree, monkeypatch):
    real_replace = os.replace

    def failing_replace(source, destination):
        if str(destination).endswith("resnet_dcn.py"):
            raise OSError(5, "Input/output error", str(destination))
        real_replace(source, destination)

    monkeypatch.setattr(core.os, "replace", failing_replace)
    with pytest.raises(PatchError, match="resnet_dcn.py failed: Input/output error; every "
                                         "file was put back as it was"):
        core.apply(tree)
    assert porcelain(tree) == ""


def test_revert_removes_the_plugin_build_folder(tree):
    core.apply(tree)
    # what `centernet-patch build` leaves when TensorRT headers are found
    plugin_build = tree / core.PLUGIN_BUILD_DIRNAME
    (plugin_build / "lib").mkdir(parents=True)
    (plugin_build / "lib" / "libdcn_trt_plugin.so").write_bytes(b"\x7fELF")
    report = core.revert(tree)
    assert core.PLUGIN_BUILD_DIRNAME + "/" in report.removed_files
    assert not plugin_build.exists()
    assert porcelain(tree) == ""
