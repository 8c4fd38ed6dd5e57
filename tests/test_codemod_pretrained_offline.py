"""pretrained_offline: downloads skipped only when asked, the rest of init untouched."""
from __future__ import annotations

import pytest

from codemod_helpers import assert_codemod, run
from patcher.codemods.base import WARNED
from patcher.codemods.pretrained_offline import (DLA_FILE, NO_PRETRAINED_ENV, RESNET_FILE,
                                                 PretrainedOfflineCommand)
from patcher.errors import DriftError

SWITCH = f"os.environ.get('{NO_PRETRAINED_ENV}', '') != '1'"

RESNET_BEFORE = """
    import torch.nn as nn
    import torch.utils.model_zoo as model_zoo

    class PoseResNet(nn.Module):
        def init_weights(self, num_layers):
            if 1:
                url = model_urls['resnet{}'.format(num_layers)]
                # ImageNet weights
                weights = model_zoo.load_url(url)
                print('=> loading pretrained model {}'.format(url))
                self.load_state_dict(weights, strict=False)
                print('=> init deconv weights from normal distribution')
                for name, m in self.deconv_layers.named_modules():
                    if isinstance(m, nn.BatchNorm2d):
                        nn.init.constant_(m.weight, 1)
    """


def test_dla_keyword_becomes_the_switch():
    assert_codemod(PretrainedOfflineCommand, DLA_FILE, """
        import os

        def get_pose_net(num_layers, heads, head_conv=256, down_ratio=4):
          model = DLASeg('dla{}'.format(num_layers), heads,
                         pretrained=True,
                         down_ratio=down_ratio)
          return model
        """, f"""
        import os

        def get_pose_net(num_layers, heads, head_conv=256, down_ratio=4):
          model = DLASeg('dla{{}}'.format(num_layers), heads,
                         pretrained={SWITCH},
                         down_ratio=down_ratio)
          return model
        """)


def test_resnet_guards_only_the_download_and_its_uses():
    assert_codemod(PretrainedOfflineCommand, RESNET_FILE, RESNET_BEFORE, f"""
        import torch.nn as nn
        import torch.utils.model_zoo as model_zoo
        import os

        class PoseResNet(nn.Module):
            def init_weights(self, num_layers):
                if 1:
                    url = model_urls['resnet{{}}'.format(num_layers)]
                    # ImageNet weights
                    if {SWITCH}:
                        weights = model_zoo.load_url(url)
                        print('=> loading pretrained model {{}}'.format(url))
                        self.load_state_dict(weights, strict=False)
                    print('=> init deconv weights from normal distribution')
                    for name, m in self.deconv_layers.named_modules():
                        if isinstance(m, nn.BatchNorm2d):
                            nn.init.constant_(m.weight, 1)
        """)


@pytest.mark.parametrize("offline", [False, True])
def test_patched_resnet_init_runs_the_deconv_init_and_downloads_only_online(
        offline, monkeypatch):
    source = run(PretrainedOfflineCommand, RESNET_FILE, RESNET_BEFORE).new_source
    calls = []

    class ModelZoo:
        @staticmethod
        def load_url(url):
            calls.append(("download", url))
            return {}

    class Module:  # just enough of torch.nn for init_weights
        class BatchNorm2d:
            weight = None

        class Module:
            pass

        class init:
            @staticmethod
            def constant_(tensor, value):
                calls.append(("init", value))

    namespace = {"nn": Module, "model_zoo": ModelZoo,
                 "model_urls": {"resnet18": "https://example.invalid/r18.pth"}}
    exec(compile(source.replace("import torch.nn as nn\n", "").replace(
        "import torch.utils.model_zoo as model_zoo\n", ""), RESNET_FILE, "exec"), namespace)
    if offline:
        monkeypatch.setenv(NO_PRETRAINED_ENV, "1")
    else:
        monkeypatch.delenv(NO_PRETRAINED_ENV, raising=False)
    network = namespace["PoseResNet"].__new__(namespace["PoseResNet"])
    network.load_state_dict = lambda weights, strict: calls.append(("load", strict))
    network.deconv_layers = type("Layers", (), {"named_modules": lambda self: [
        ("1", Module.BatchNorm2d())]})()
    network.init_weights(18)
    expected = [("init", 1)]
    if not offline:
        expected = [("download", "https://example.invalid/r18.pth"), ("load", False)] + expected
    assert calls == expected


def test_other_pretrained_values_are_left_with_a_warning():
    result = run(PretrainedOfflineCommand, DLA_FILE, """
        def get_pose_net(num_layers, heads, use_imagenet):
          return DLASeg('dla34', heads, pretrained=use_imagenet)
        """)
    assert result.outcome == WARNED and "`pretrained=use_imagenet` alone" in result.messages[0]


def test_pretrained_false_counts_as_offline_already():
    result = run(PretrainedOfflineCommand, DLA_FILE, "m = DLASeg('dla34', {}, pretrained=False)\n")
    assert result.outcome == "applied"


def test_drift_when_the_download_moved():
    with pytest.raises(DriftError, match=r"resnet_dcn.py: pretrained_offline: expected the "
                                         r"target; found `self.load_state_dict\(model_zoo."
                                         r"load_url\(url\)\)` \(line 3\), not `NAME = "):
        run(PretrainedOfflineCommand, RESNET_FILE, """
            class PoseResNet:
                def init_weights(self, url):
                    self.load_state_dict(model_zoo.load_url(url))
            """)
