"""The codemods that make CenterNet build and export on PyTorch 2.x, one per module.

:data:`CODEMODS` run in this order on the target tree's files; :data:`TORCH_CODEMOD` runs
only on a torch file the user names (``apply --patch-torch``); :data:`PLACED` are the
file sets ``apply`` adds to the tree. The engine (patcher/apply.py) plans all of them in
memory before writing anything.
"""
from __future__ import annotations

from patcher.codemods.base import (APPLIED, CHANGED, SKIPPED, WARNED, CenterNetCodemod,
                                   CodemodResult, Target, run_codemod)
from patcher.codemods.dcn_import import DcnImportCommand
from patcher.codemods.iter_filter import IterFilterCommand
from patcher.codemods.placed_files import PLACED, PlacedFiles
from patcher.codemods.pretrained_offline import (NO_PRETRAINED_ENV,
                                                 OFFLINE_ABSENT_KEY_PREFIXES,
                                                 PretrainedOfflineCommand)
from patcher.codemods.task_argument import TaskArgumentCommand
from patcher.codemods.unused_torchvision import UnusedTorchvisionCommand

CODEMODS = (DcnImportCommand, TaskArgumentCommand, UnusedTorchvisionCommand,
            PretrainedOfflineCommand)
TORCH_CODEMOD = IterFilterCommand

__all__ = ["APPLIED", "CHANGED", "SKIPPED", "WARNED", "CODEMODS", "TORCH_CODEMOD", "PLACED",
           "CenterNetCodemod", "CodemodResult", "PlacedFiles", "Target", "run_codemod",
           "NO_PRETRAINED_ENV", "OFFLINE_ABSENT_KEY_PREFIXES"]
