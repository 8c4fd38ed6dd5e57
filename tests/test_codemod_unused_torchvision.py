"""unused_torchvision: removed when unused, left with a warning when used."""
from __future__ import annotations

from codemod_helpers import assert_codemod, run
from patcher.codemods.base import APPLIED, CHANGED, WARNED
from patcher.codemods.unused_torchvision import UnusedTorchvisionCommand

MODEL = "src/lib/models/model.py"


def test_unused_import_is_removed_and_the_blank_lines_kept():
    assert_codemod(UnusedTorchvisionCommand, MODEL, """
        from __future__ import print_function

        import torchvision.models as models
        import torch
        import torch.nn as nn

        def create_model(arch):
          return nn.Identity()
        """, """
        from __future__ import print_function

        import torch
        import torch.nn as nn

        def create_model(arch):
          return nn.Identity()
        """)


def test_used_import_is_kept_with_a_warning():
    before = """
        import torchvision.models as models
        import torch

        backbone = models.resnet18
        """
    result = run(UnusedTorchvisionCommand, MODEL, before)
    assert result.outcome == WARNED and result.new_source == result.old_source
    assert result.messages == [
        "src/lib/models/model.py:1: left `import torchvision.models as models` alone: "
        "`models` is used in this module, so torchvision stays a dependency"]


def test_only_the_unused_name_of_a_shared_import_goes():
    result = run(UnusedTorchvisionCommand, MODEL, """
        from torchvision import models, ops
        keep = ops.nms
        """)
    assert result.outcome == CHANGED
    assert result.new_source == "from torchvision import ops\nkeep = ops.nms\n"
    assert "`ops` is used" in result.messages[0]


def test_guarded_import_inside_a_block_is_left_alone():
    result = run(UnusedTorchvisionCommand, MODEL, """
        try:
            import torchvision
        except ImportError:
            torchvision = None
        """)
    assert result.outcome == WARNED and "inside a block" in result.messages[0]


def test_no_torchvision_import_is_the_patched_state():
    assert run(UnusedTorchvisionCommand, MODEL, "import torch\n").outcome == APPLIED
