"""One exception hierarchy for the whole tool.

``str(error)`` is the message a user reads; ``tip`` is an optional next step. The CLI
(patcher/cli.py) is the only place that turns these into printed lines and exit codes;
the core raises and never prints.
"""
from __future__ import annotations

from typing import Optional, Sequence

# Exit codes, one meaning each (the CLI maps exceptions to these).
EXIT_OK = 0
EXIT_CHECK_FAILED = 1  # --check found pending changes; verify found a mismatch
EXIT_USAGE = 2  # the user's input is at fault (paths, options, files)
EXIT_MISSING_DEPENDENCY = 3  # a tool or library this step needs is absent (TensorRT, nvcc, git)
EXIT_BUILD_FAILED = 4  # a compiler or build step failed
EXIT_INTERNAL = 70  # a bug in this tool


class CenterNetPatchError(Exception):
    """Base class. Subclasses set ``exit_code``; ``tip`` says what to do next."""

    exit_code = EXIT_USAGE

    def __init__(self, message: str, *, tip: Optional[str] = None):
        super().__init__(message)
        self.message = message
        self.tip = tip

    def __str__(self) -> str:  # the message a user reads
        return self.message


class UsageError(CenterNetPatchError):
    """An option, value or path given by the user is not valid."""


class TargetError(CenterNetPatchError):
    """The target directory is not usable (not a CenterNet tree, not empty, ...)."""


class CloneError(CenterNetPatchError):
    """Cloning or checking out the upstream repository failed."""


class NetworkError(CloneError):
    """A remote could not be reached."""


class PatchError(CenterNetPatchError):
    """A codemod cannot be applied; nothing was written."""


class DriftError(PatchError):
    """An expected target was not found: upstream differs from what the codemods know."""


class SourceParseError(PatchError):
    """A target file does not parse."""


class DirtyTreeError(PatchError):
    """A target file has uncommitted changes and --force was not given."""


class LockError(PatchError):
    """Another centernet-patch process holds the target tree's lock."""


class MissingDependencyError(CenterNetPatchError):
    """A tool or library a step needs is absent; other steps still work."""

    exit_code = EXIT_MISSING_DEPENDENCY


class BuildError(CenterNetPatchError):
    """A build command failed; carries the command and the tail of its log."""

    exit_code = EXIT_BUILD_FAILED

    def __init__(self, message: str, *, command: Sequence[str] = (), log_tail: str = "",
                 log_path: Optional[str] = None, tip: Optional[str] = None):
        super().__init__(message, tip=tip)
        self.command = list(command)
        self.log_tail = log_tail
        self.log_path = log_path

    def __str__(self) -> str:
        parts = [self.message]
        if self.command:
            parts.append("command: " + " ".join(self.command))
        if self.log_path:
            parts.append(f"full log: {self.log_path}")
        if self.log_tail:
            parts.append("last lines of the log:\n" + self.log_tail)
        return "\n".join(parts)


class CheckpointError(CenterNetPatchError):
    """A checkpoint is unreadable, unsafe to unpickle, or does not fit the model."""


class ExportError(CenterNetPatchError):
    """The ONNX export failed."""


class VerificationFailed(CenterNetPatchError):
    """The exported model does not match PyTorch within tolerance."""

    exit_code = EXIT_CHECK_FAILED
