"""The engine's four facts on a real CenterNet checkout (not in CI: no upstream code here).

Skipped unless CENTERNET_UPSTREAM names a CenterNet clone (path) or git URL. The clone is
made in a temporary folder; a local clone named by CENTERNET_UPSTREAM is only read.
"""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from patcher import apply as core
from patcher.codemods import NO_PRETRAINED_ENV

UPSTREAM = os.environ.get("CENTERNET_UPSTREAM", "")
pytestmark = pytest.mark.skipif(not UPSTREAM, reason="CENTERNET_UPSTREAM is not set: it names "
                                                     "the CenterNet clone or URL to patch")

PATCHED = ["src/lib/models/model.py", "src/lib/models/networks/pose_dla_dcn.py",
           "src/lib/models/networks/resnet_dcn.py", "src/lib/opts.py"]


def git(tree: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=tree, check=True, capture_output=True,
                          text=True).stdout


def test_apply_again_check_revert_on_upstream(tmp_path):
    source = UPSTREAM
    if Path(source).expanduser().is_dir():
        source = Path(source).expanduser().resolve().as_uri()
    tree = tmp_path / "CenterNet"
    subprocess.run(["git", "clone", "-q", source, str(tree)], check=True)
    if os.environ.get("CENTERNET_UPSTREAM_REF"):
        git(tree, "checkout", "-q", os.environ["CENTERNET_UPSTREAM_REF"])

    report = core.apply(tree)
    assert not report.already_applied
    assert git(tree, "diff", "--name-only").split() == PATCHED
    assert core.apply(tree).already_applied
    assert core.check(tree)
    assert {state for _, state, _ in core.status(tree)} <= {"applied", "not-needed"}

    # upstream's own model factory imports every network; none may need torchvision
    script = textwrap.dedent("""
        import sys
        import torch.utils.model_zoo as model_zoo
        def no_network(url, **kwargs):
            raise SystemExit('download attempted: ' + url)
        model_zoo.load_url = no_network
        try:
            import dcn_ext.ops  # a built copy registers the op (the tree's copy is unbuilt)
        except ImportError:
            pass
        from lib.opts import opts
        from lib.models.model import create_model
        for argv in (['--task', 'ddd'], ['ddd'], []):
            print('task', opts().init(argv).task)
        heads = opts().init(['ddd']).heads
        for arch, head_conv in (('dla_34', 256), ('resdcn_18', 64)):
            model = create_model(arch, heads, head_conv)
            print(arch, sum(type(m).__name__ == 'ModulatedDeformConvPack'
                            for m in model.modules()))
        print('torchvision' in sys.modules)
    """)
    project = str(Path(__file__).resolve().parents[1])
    env = {**os.environ, NO_PRETRAINED_ENV: "1",
           "PYTHONPATH": os.pathsep.join(filter(None, [project, os.environ.get("PYTHONPATH")]))}
    done = subprocess.run([sys.executable, "-c", script], cwd=tree / "src", env=env,
                          capture_output=True, text=True)
    if "ExtensionNotBuiltError" in done.stderr:
        pytest.skip("the dcn extension is not built (cd dcn_ext && python setup.py build_ext "
                    "--inplace)")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert [line for line in lines if line.startswith("task ")] == [
        "task ddd", "task ddd", "task ctdet"]
    assert "dla_34 16" in lines and "resdcn_18 3" in lines and lines[-1] == "False"

    core.revert(tree)
    assert git(tree, "status", "--porcelain") == ""
