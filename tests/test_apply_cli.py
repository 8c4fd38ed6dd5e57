"""`centernet-patch apply/status` on the miniature, and the patched miniature in use."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from codemod_helpers import freeze_placed_sources
from patcher.cli import main
from patcher.codemods import NO_PRETRAINED_ENV
from patcher.miniature import create_miniature


@pytest.fixture(autouse=True)
def frozen_placed(monkeypatch, tmp_path):
    return freeze_placed_sources(monkeypatch, tmp_path / "placed-sources")


def porcelain(tree: Path) -> str:
    return subprocess.run(["git", "status", "--porcelain", "--ignored"], cwd=tree, check=True,
                          capture_output=True, text=True).stdout


def test_cli_check_diff_apply_status_revert(tmp_path, capsys, frozen_placed):
    tree = create_miniature(tmp_path / "CenterNet")
    placed = sum(len(files.files()) for files in frozen_placed)
    assert main(["apply", str(tree), "--check"]) == 1
    out = capsys.readouterr().out
    assert f"{4 + placed} files need changes:" in out and "modified src/lib/opts.py  (task_argument)" in out

    assert main(["apply", str(tree), "--diff"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("--- a/src/lib/models/networks/pose_dla_dcn.py\n")
    assert "+    self.parser.add_argument('--task', dest='task', default='ctdet',\n" in out
    assert porcelain(tree) == ""

    assert main(["status", str(tree)]) == 1
    assert main(["apply", str(tree)]) == 0
    assert f"{4 + placed} files written" in capsys.readouterr().out
    assert main(["apply", str(tree)]) == 0
    assert "already applied" in capsys.readouterr().out
    assert main(["apply", str(tree), "--check"]) == 0
    assert main(["status", str(tree)]) == 0
    out = capsys.readouterr().out
    assert "task_argument" in out and "pending" not in out

    assert main(["apply", str(tree), "--revert"]) == 0
    assert f"4 files restored, {placed} removed" in capsys.readouterr().out
    assert porcelain(tree) == ""


def test_cli_check_on_a_missing_tree_is_a_usage_error(tmp_path, capsys):
    assert main(["apply", str(tmp_path / "nowhere"), "--check"]) == 2
    err = capsys.readouterr().err
    assert "does not exist" in err and "centernet-patch apply" in err


def test_cli_dirty_tree_message(tmp_path, capsys):
    tree = create_miniature(tmp_path / "CenterNet")
    model = tree / "src/lib/models/model.py"
    model.write_text(model.read_text() + "# local edit\n")
    assert main(["apply", str(tree)]) == 2
    err = capsys.readouterr().err
    assert "refusing to patch files with uncommitted changes: src/lib/models/model.py" in err
    assert "TIP:" in err and "--force" in err


def test_patched_miniature_builds_models_offline_and_parses_every_task_form(tmp_path):
    tree = create_miniature(tmp_path / "CenterNet")
    assert main(["apply", str(tree)]) == 0
    script = textwrap.dedent("""
        import sys
        import torch
        try:  # this project's built copy registers the op; the tree's copy then reuses it
            import dcn_ext.ops
        except ImportError as error:
            print('NOT BUILT', error)
            raise SystemExit(0)
        import torch.utils.model_zoo as model_zoo
        downloads = []
        def no_network(url, **kwargs):
            downloads.append(url)
            raise OSError('no network in this test: ' + url)
        model_zoo.load_url = no_network
        from lib.opts import opts
        from lib.models.model import create_model
        assert 'torchvision' not in sys.modules
        for argv in ([], ['ddd'], ['--task', 'ddd']):
            opt = opts().init(argv)
            print('task', argv, opt.task, list(opt.heads))
        opt = opts().init(['ddd'])
        for arch in ('dla_34', 'resdcn_18'):
            try:
                model = create_model(arch, opt.heads, opt.head_conv)
            except OSError:
                print(arch, 'download attempted')
                continue
            dcn = [type(m).__name__ for m in model.modules()
                   if type(m).__name__ == 'ModulatedDeformConvPack']
            out = model.eval()(torch.randn(1, 3, 64, 96))[0]
            print(arch, 'built', len(dcn), 'DCN layers', 'downloads', len(downloads),
                  'hm', tuple(out['hm'].shape))
    """)
    env = {k: v for k, v in os.environ.items() if k != NO_PRETRAINED_ENV}
    project = str(Path(__file__).resolve().parents[1])  # dcn_ext, when not pip-installed
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [project, env.get("PYTHONPATH")]))
    online = subprocess.run([sys.executable, "-c", script], cwd=tree / "src", env=env,
                            capture_output=True, text=True)
    assert online.returncode == 0, online.stderr
    if online.stdout.startswith("NOT BUILT"):
        pytest.skip(f"the dcn extension is not built here ({online.stdout.strip()}); "
                    f"build it with `cd dcn_ext && python setup.py build_ext --inplace`")
    assert "dla_34 download attempted" in online.stdout  # training keeps the download
    assert "resdcn_18 download attempted" in online.stdout

    offline = subprocess.run([sys.executable, "-c", script], cwd=tree / "src",
                             env={**env, NO_PRETRAINED_ENV: "1"}, capture_output=True,
                             text=True)
    assert offline.returncode == 0, offline.stderr
    lines = offline.stdout.splitlines()
    ddd_heads = "['hm', 'dep', 'rot', 'dim', 'wh', 'reg']"
    assert f"task [] ctdet ['hm', 'wh', 'reg']" in lines
    assert f"task ['ddd'] ddd {ddd_heads}" in lines
    assert f"task ['--task', 'ddd'] ddd {ddd_heads}" in lines
    assert "dla_34 built 4 DCN layers downloads 0 hm (1, 3, 16, 24)" in lines
    assert "resdcn_18 built 2 DCN layers downloads 0 hm (1, 3, 16, 24)" in lines


def test_help_describes_the_options(capsys):
    assert main(["status", "--help"]) == 0
    assert "applied," in capsys.readouterr().out
    assert main(["apply", "--help"]) == 0
    out = capsys.readouterr().out
    for option in ("--upstream", "--ref", "--force", "--diff", "--check", "--revert",
                   "--patch-torch"):
        assert option in out
