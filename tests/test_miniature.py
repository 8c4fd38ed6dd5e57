"""The CenterNet miniature: deterministic, upstream's layout, upstream's failure modes."""
from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from patcher.errors import TargetError
from patcher.miniature import LAYOUT_MARKERS, create_miniature, miniature_files


def _git(tree: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=tree, check=True, capture_output=True,
                          text=True).stdout


def _python(cwd: Path, code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=cwd,
                          capture_output=True, text=True)


def test_two_miniatures_are_the_same_commit(tmp_path):
    first = create_miniature(tmp_path / "a")
    second = create_miniature(tmp_path / "b")
    assert _git(first, "rev-parse", "HEAD") == _git(second, "rev-parse", "HEAD")
    assert _git(first, "status", "--porcelain") == ""
    assert _git(first, "log", "--format=%an %ad", "--date=iso").count("\n") == 1


def test_layout_markers_and_tracked_files(tmp_path):
    tree = create_miniature(tmp_path / "m")
    tracked = set(_git(tree, "ls-files").split())
    assert set(LAYOUT_MARKERS) <= tracked
    assert tracked == set(miniature_files())
    assert not any("__pycache__" in path for path in tracked)


def test_patch_targets_are_present(tmp_path):
    tree = create_miniature(tmp_path / "m")
    networks = tree / "src/lib/models/networks"
    for name in ("pose_dla_dcn.py", "resnet_dcn.py"):
        assert "from .DCNv2.dcn_v2 import DCN\n" in (networks / name).read_text()
    assert "import torchvision.models as models\n" in (
        tree / "src/lib/models/model.py").read_text()
    assert "add_argument('task', default='ctdet'" in (tree / "src/lib/opts.py").read_text()
    assert "if 1:" in (networks / "resnet_dcn.py").read_text()


def test_refuses_a_non_empty_destination(tmp_path):
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "file").write_text("x")
    with pytest.raises(TargetError, match="not an empty directory"):
        create_miniature(tmp_path / "busy")


def test_legacy_dcnv2_fails_on_import_like_upstream(tmp_path):
    tree = create_miniature(tmp_path / "m")
    done = _python(tree / "src", "import lib.models.networks.DCNv2.dcn_v2")
    assert done.returncode != 0
    assert "No module named 'lib.models.networks.DCNv2._ext'" in done.stderr
    done = _python(tree / "src", "import lib.models.networks.pose_dla_dcn")
    assert "DCNv2._ext" in done.stderr


def test_unpatched_opts_require_the_task(tmp_path):
    tree = create_miniature(tmp_path / "m")
    done = _python(tree / "src", "from lib.opts import opts; opts().init([])")
    assert done.returncode == 2
    assert "the following arguments are required: task" in done.stderr
    done = _python(tree / "src", """
        from lib.opts import opts
        opt = opts().init(['ddd'])
        print(opt.heads, opt.input_h, opt.input_w, opt.head_conv)
    """)
    assert done.returncode == 0, done.stderr
    assert ("{'hm': 3, 'dep': 1, 'rot': 8, 'dim': 3, 'wh': 2, 'reg': 2} 384 1280 256"
            in done.stdout)


def test_networks_build_with_a_stand_in_dcn(tmp_path):
    # A plain-convolution stand-in for DCN (zero offsets, mask 1) shows that the
    # miniature's networks are complete: heads, output stride 4, the DCN module names.
    tree = create_miniature(tmp_path / "m")
    done = _python(tree / "src", """
        import sys, types, torch
        from torch import nn
        import torch.nn.functional as F

        class DCN(nn.Module):
            def __init__(self, chi, cho, kernel_size, stride, padding, dilation=1,
                         deformable_groups=1):
                super().__init__()
                self.weight = nn.Parameter(torch.randn(cho, chi, 3, 3) * 0.1)
                self.bias = nn.Parameter(torch.zeros(cho))
                self.conv_offset_mask = nn.Conv2d(chi, 27, 3, 1, 1)
            def forward(self, x):
                return F.conv2d(x, self.weight, self.bias, 1, 1)

        legacy = types.ModuleType('lib.models.networks.DCNv2.dcn_v2')
        legacy.DCN = DCN
        sys.modules[legacy.__name__] = legacy
        import torch.utils.model_zoo as model_zoo
        urls = []
        def offline(url, **kwargs):
            urls.append(url)
            raise OSError('offline')
        model_zoo.load_url = offline
        from lib.opts import opts
        from lib.models.networks import pose_dla_dcn, resnet_dcn
        opt = opts().init(['ddd', '--input_h', '64', '--input_w', '96'])
        for get_net in (pose_dla_dcn.get_pose_net, resnet_dcn.get_pose_net):
            try:
                get_net(34 if get_net is pose_dla_dcn.get_pose_net else 18, opt.heads)
            except OSError:
                pass
        print('downloads', len(urls))
        dla = pose_dla_dcn.DLASeg('dla34', opt.heads, pretrained=False, down_ratio=4,
                                  final_kernel=1, last_level=4, head_conv=opt.head_conv)
        res = resnet_dcn.PoseResNet(*resnet_dcn.resnet_spec[18], opt.heads, 64)
        for model in (dla, res):
            out = model.eval()(torch.randn(1, 3, 64, 96))
            assert isinstance(out, list) and len(out) == 1
            print(list(out[0]), tuple(out[0]['hm'].shape),
                  [n for n, m in model.named_modules() if isinstance(m, DCN)])
    """)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert "downloads 2" in lines
    heads = "['hm', 'dep', 'rot', 'dim', 'wh', 'reg'] (1, 3, 16, 24)"
    assert (heads + " ['dla_up.ida_0.proj_1.conv', 'dla_up.ida_0.node_1.conv', "
            "'ida_up.proj_1.conv', 'ida_up.node_1.conv']") in lines
    assert heads + " ['deconv_layers.0', 'deconv_layers.6']" in lines
