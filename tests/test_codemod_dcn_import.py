"""dcn_import: every way forks import DCN from the legacy DCNv2 extension."""
from __future__ import annotations

import pytest

from patcher.codemods.base import SKIPPED
from patcher.codemods.dcn_import import (DcnImportCommand, relative_import_to_package,
                                         replacement_import_for)
from patcher.errors import DriftError, PatchError
from codemod_helpers import assert_codemod, run

DLA = "src/lib/models/networks/pose_dla_dcn.py"
NEW = "from .dcn.modules.deform_conv import ModulatedDeformConvPack as DCN"


def test_upstream_form_in_both_declared_files():
    for path in (DLA, "src/lib/models/networks/resnet_dcn.py"):
        assert_codemod(DcnImportCommand, path, """
            import torch
            import torch.nn as nn
            from .DCNv2.dcn_v2 import DCN
            import torch.utils.model_zoo as model_zoo

            layer = DCN(4, 4, kernel_size=(3,3), stride=1, padding=1)
            """, f"""
            import torch
            import torch.nn as nn
            {NEW}
            import torch.utils.model_zoo as model_zoo

            layer = DCN(4, 4, kernel_size=(3,3), stride=1, padding=1)
            """)


def test_alias_is_kept():
    assert_codemod(DcnImportCommand, DLA, "from .DCNv2.dcn_v2 import DCN as DeformableConv\n",
                   "from .dcn.modules.deform_conv import ModulatedDeformConvPack as "
                   "DeformableConv\n")


@pytest.mark.parametrize("legacy", [
    "from dcn_v2 import DCN",  # a pip-installed DCNv2
    "from DCNv2.dcn_v2 import DCN",
    "from .DCNv2 import DCN",  # the package re-exporting DCN
    "from ..networks.DCNv2.dcn_v2 import DCN",
    "from .DCNv2.dcn_v2 import (DCN)",
])
def test_other_spellings_become_the_relative_import(legacy):
    assert_codemod(DcnImportCommand, DLA, legacy + "\n", NEW + "\n")


def test_relative_level_follows_the_file_depth():
    assert relative_import_to_package(DLA) == (1, ["dcn", "modules", "deform_conv"])
    assert replacement_import_for("src/lib/models/networks/backbones/dla.py") == (
        "from ..dcn.modules.deform_conv import ModulatedDeformConvPack as DCN")
    assert_codemod(DcnImportCommand, "src/lib/models/networks/backbones/dla.py",
                   "from ..DCNv2.dcn_v2 import DCN\n",
                   "from ..dcn.modules.deform_conv import ModulatedDeformConvPack as DCN\n")
    assert_codemod(DcnImportCommand, "src/lib/models/model.py",
                   "from .networks.DCNv2.dcn_v2 import DCN\n",
                   "from .networks.dcn.modules.deform_conv import ModulatedDeformConvPack as "
                   "DCN\n")


def test_try_except_blocks_and_indentation():
    assert_codemod(DcnImportCommand, DLA, """
        try:
            from .DCNv2.dcn_v2 import DCN  # compiled extension
        except:
            DCN = None


        def build():
          if True:
            from dcn_v2 import DCN as D
          return D
        """, f"""
        try:
            {NEW}  # compiled extension
        except:
            DCN = None


        def build():
          if True:
            from .dcn.modules.deform_conv import ModulatedDeformConvPack as D
          return D
        """)


@pytest.mark.parametrize("legacy, why", [
    ("from .DCNv2.dcn_v2 import *", "star import"),
    ("from .DCNv2.dcn_v2 import DCN, DCNPooling", "also imports DCNPooling"),
    ("import DCNv2.dcn_v2 as dcn", "imports the legacy module itself"),
])
def test_constructs_it_cannot_rewrite_are_refused_with_file_and_line(legacy, why):
    with pytest.raises(PatchError, match=rf"pose_dla_dcn.py:2: dcn_import: cannot rewrite "
                                         rf".*{why}.*nothing was written"):
        run(DcnImportCommand, DLA, "import torch\n" + legacy + "\n")


def test_a_file_outside_src_lib_is_refused():
    with pytest.raises(PatchError, match="outside src/lib"):
        run(DcnImportCommand, "tools/convert.py", "from dcn_v2 import DCN\n")


def test_drift_names_the_file_target_and_what_was_found():
    with pytest.raises(DriftError) as error:
        run(DcnImportCommand, DLA, "import torch\nfrom .dcn_v3 import DeformConv3\n")
    message = str(error.value)
    assert message.startswith(f"{DLA}: dcn_import: expected the target; found ")
    assert "`from .dcn_v3 import DeformConv3` (line 2)" in message


def test_optional_target_without_legacy_import_is_skipped():
    result = run(DcnImportCommand, "src/lib/models/networks/other.py", "import torch\n",
                 required=False)
    assert result.outcome == SKIPPED and result.new_source == "import torch\n"


def test_fork_files_importing_dcnv2_become_optional_targets(tmp_path):
    networks = tmp_path / "src/lib/models/networks"
    (networks / "DCNv2").mkdir(parents=True)
    (networks / "DCNv2" / "dcn_v2.py").write_text("from ._ext import dcn_v2\n")
    (networks / "pose_dla_dcn.py").write_text("from .DCNv2.dcn_v2 import DCN\n")
    (networks / "fork_net.py").write_text("from .DCNv2.dcn_v2 import DCN\n")
    (networks / "plain.py").write_text("import torch\n")
    extra = DcnImportCommand.extra_targets(tmp_path)
    assert [(t.path, t.required) for t in extra] == [
        ("src/lib/models/networks/fork_net.py", False)]
