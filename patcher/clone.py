"""Find or fetch the CenterNet checkout that the codemods will patch.

``locate_or_clone(target)`` uses ``target`` when it already is a CenterNet tree, otherwise
clones the upstream repository into it and checks out the pinned commit. Nothing that
existed before is ever modified or deleted: a failed clone removes only what it created.
"""
from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Optional, Tuple

from patcher.errors import CloneError, MissingDependencyError, NetworkError, TargetError
from patcher.progress import NULL_SINK, ProgressSink

# The upstream commit the codemods were written against ("update model zoo link").
PINNED_COMMIT = "4c50fd3a46bdf63dbf2082c5cbb3458d39579e6c"
DEFAULT_UPSTREAM = "https://github.com/xingyizhou/CenterNet.git"

# Paths that every CenterNet checkout has (a trailing "/" means a directory).
CENTERNET_MARKERS: Tuple[str, ...] = (
    "src/lib/opts.py",
    "src/lib/models/model.py",
    "src/lib/models/networks/",
)

# git's words for "the remote could not be reached" (as opposed to "it answered no").
_UNREACHABLE = re.compile(
    r"could not resolve|unable to access|failed to connect|connection (refused|timed out|reset)"
    r"|network is unreachable|could not read from remote|timed out|no route to host"
    r"|does not appear to be a git repository|repository .* not found|does not exist"
    r"|not found|terminal prompts disabled|authentication failed",
    re.IGNORECASE,
)


@dataclass
class CloneResult:
    path: Path  # the CenterNet tree (absolute)
    commit: Optional[str]  # HEAD's full SHA; None when the tree is not a git checkout
    cloned: bool  # True when this call cloned it, False when an existing tree was used
    warnings: List[str] = field(default_factory=list)  # also reported through sink.warn


def missing_markers(path: Path) -> List[str]:
    """The CenterNet marker paths absent from ``path``."""
    path = Path(path)
    missing = []
    for marker in CENTERNET_MARKERS:
        candidate = path / marker
        present = candidate.is_dir() if marker.endswith("/") else candidate.is_file()
        if not present:
            missing.append(marker)
    return missing


def is_centernet_tree(path: Path) -> bool:
    """True when ``path`` has CenterNet's layout (opts.py, model.py, networks/)."""
    return Path(path).is_dir() and not missing_markers(path)


def _load_git():
    """GitPython, or a MissingDependencyError when it or the git executable is absent."""
    tip = ("install git (e.g. `apt-get install git`) or point GIT_PYTHON_GIT_EXECUTABLE at "
           "a git executable")
    git_command = os.environ.get("GIT_PYTHON_GIT_EXECUTABLE", "git")
    if shutil.which(git_command) is None:
        raise MissingDependencyError(
            f"git executable not found: {git_command!r} is not on PATH; cloning and "
            f"checking the target's commit need git", tip=tip)
    try:
        import git  # GitPython runs `git version` on import and fails without git
    except ImportError as error:
        raise MissingDependencyError(f"GitPython cannot use git: {error}", tip=tip) from error
    return git


def _is_git_checkout(path: Path) -> bool:
    return (path / ".git").exists()


def _head_commit(git, path: Path) -> Optional[str]:
    try:
        return git.Repo(path).head.commit.hexsha
    except (git.exc.InvalidGitRepositoryError, git.exc.NoSuchPathError, ValueError):
        return None  # not a checkout, or a checkout without any commit


def _resolve_ref(repo, ref: str) -> Optional[str]:
    """The commit SHA that ``ref`` (SHA, tag, branch or remote branch) names, or None."""
    for candidate in (ref, f"origin/{ref}"):
        try:
            return repo.git.rev_parse("--verify", "--quiet", f"{candidate}^{{commit}}").strip()
        except Exception:  # GitCommandError: not a name of a commit here
            continue
    return None


def _drift_warning(target: Path, ref: Optional[str]) -> Tuple[Optional[str], Optional[str]]:
    """(HEAD commit of the existing tree or None, a warning or None)."""
    drift = "codemods will detect drift"
    if not _is_git_checkout(target):
        return None, (f"{target} is a CenterNet tree but not a git checkout: its commit "
                      f"cannot be checked; {drift}")
    try:
        git = _load_git()
    except MissingDependencyError as missing:  # the files can still be patched
        return None, f"{missing}: the commit of {target} is not checked; {drift}"
    commit = _head_commit(git, target)
    if commit is None:
        return None, f"{target} is a git checkout without any commit; {drift}"
    if ref is not None and _resolve_ref(git.Repo(target), ref) != commit:
        what = "the pinned commit" if ref == PINNED_COMMIT else "the requested ref"
        return commit, (f"{target} is at commit {commit[:12]}, not {ref[:12]} ({what}); "
                        f"using it anyway: {drift}")
    return commit, None


def _use_existing(target: Path, ref: Optional[str], sink: ProgressSink) -> CloneResult:
    commit, warning = _drift_warning(target, ref)
    warnings = [warning] if warning else []
    for message in warnings:
        sink.warn(message)
    return CloneResult(path=target, commit=commit, cloned=False, warnings=warnings)


def _check_clone_target(target: Path) -> None:
    """Raise TargetError unless ``target`` is missing or an empty directory."""
    if not target.exists():
        return
    if not target.is_dir():
        raise TargetError(
            f"{target} exists and is not a directory",
            tip="pass a CenterNet checkout, or a new or empty directory to clone into")
    if not any(target.iterdir()):
        return
    missing = ", ".join(missing_markers(target))
    if _is_git_checkout(target):
        raise TargetError(
            f"{target} exists but is not a CenterNet tree: it is a git checkout without "
            f"{missing}",
            tip="pass the root of a CenterNet checkout (the directory that holds src/lib), "
                "or a new or empty directory to clone into")
    raise TargetError(
        f"{target} is not empty and not a git checkout (no .git), and it is not a "
        f"CenterNet tree (missing {missing}); refusing to clone into it",
        tip="pass a new or empty directory to clone into, or the root of a CenterNet checkout")


def _created_dirs(target: Path) -> List[Path]:
    """Directories that creating ``target`` would create, outermost first."""
    created = []
    for path in [target, *target.parents]:
        if path.exists():
            break
        created.append(path)
    return list(reversed(created))


def _remove_created(target: Path, created: List[Path]) -> None:
    """Undo a failed clone: remove what we created and nothing else."""
    if created:
        shutil.rmtree(created[0], ignore_errors=True)
    elif target.is_dir():  # target was an empty directory before: empty it again
        for child in target.iterdir():
            if child.is_dir() and not child.is_symlink():
                shutil.rmtree(child, ignore_errors=True)
            else:
                child.unlink(missing_ok=True)


def _git_failure_detail(error: Exception) -> str:
    """git's own "fatal:"/"error:" lines from a GitCommandError, joined on one line."""
    stderr = str(getattr(error, "stderr", "") or error)
    lines = [line.strip() for line in stderr.splitlines()]
    reasons = [line.split(":", 1)[1].strip().rstrip("'")
               for line in lines if line.startswith(("fatal:", "error:"))]
    if reasons:
        return "; ".join(reasons)
    meaningful = [line for line in lines if line and not line.startswith("stderr:")]
    return meaningful[-1] if meaningful else type(error).__name__


def _clone_error(upstream: str, error: Exception) -> CloneError:
    detail = _git_failure_detail(error)
    mirror_tip = (
        "check the network, or clone from a local copy or a mirror: "
        "`--upstream /path/to/CenterNet` or `--upstream file:///path/to/CenterNet.git`")
    if _UNREACHABLE.search(detail):
        return NetworkError(f"cannot clone {upstream}: the repository could not be reached "
                            f"({detail})", tip=mirror_tip)
    return CloneError(f"cloning {upstream} failed: {detail}", tip=mirror_tip)


def locate_or_clone(target: Path, *, upstream: str = DEFAULT_UPSTREAM,
                    ref: Optional[str] = PINNED_COMMIT,
                    sink: ProgressSink = NULL_SINK) -> CloneResult:
    """Use ``target`` if it is a CenterNet tree, else clone ``upstream`` into it at ``ref``.

    An existing tree at another commit than ``ref`` is used with a warning (the codemods
    check the content and report drift). ``ref=None`` keeps the clone's default branch.
    Clone targets must be missing or empty directories. On any failure the directories
    this call created are removed; nothing that existed before is touched.
    """
    target = Path(target).expanduser().absolute()
    if is_centernet_tree(target):
        return _use_existing(target, ref, sink)
    _check_clone_target(target)
    git = _load_git()

    created = _created_dirs(target)
    try:
        with sink.step(f"Cloning {upstream} into {target}"):
            env = {"GIT_TERMINAL_PROMPT": "0"}  # never hang waiting for a password
            try:
                repo = git.Repo.clone_from(upstream, target, no_checkout=ref is not None,
                                           env=env)
            except git.exc.GitCommandError as error:
                raise _clone_error(upstream, error) from None
        commit = repo.head.commit.hexsha if ref is None else None
        if ref is not None:
            with sink.step(f"Checking out {ref}"):
                commit = _resolve_ref(repo, ref)
                if commit is None:
                    raise CloneError(
                        f"unknown ref {ref!r}: no commit, branch or tag of that name in "
                        f"{upstream}",
                        tip="pass an existing commit SHA, tag or branch with --ref, or omit "
                            f"--ref to use the pinned commit {PINNED_COMMIT[:12]}")
                repo.git.checkout("--detach", commit)
        repo.close()
        if not is_centernet_tree(target):
            raise TargetError(
                f"{upstream} at {ref or 'its default branch'} is not a CenterNet tree "
                f"(missing {', '.join(missing_markers(target))})",
                tip="check --upstream and --ref")
    except BaseException:
        _remove_created(target, created)
        raise
    return CloneResult(path=target, commit=commit, cloned=True, warnings=[])
