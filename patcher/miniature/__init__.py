"""A miniature of CenterNet's repository layout, written by us, created on the fly.

CI and ``centernet-patch demo`` cannot use the real CenterNet (no fetched code is ever
committed here), so :func:`create_miniature` writes a git repository with the same file
names, entry points and patch targets as upstream at the pinned commit, but tiny networks
of our own (see ``centernet-layout/README.md``). It is deterministic: the same files, the
same author, the same date, hence the same commit id on every machine.
"""
from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Dict, List, Tuple

from patcher.errors import MissingDependencyError, TargetError

TEMPLATE_DIR = Path(__file__).with_name("centernet-layout")

# Template names that stand for dot-files (package data globs skip dot-files).
_DOT_PREFIX = "dot-"

# Fixed identity and time so that the commit id never changes.
_COMMIT_IDENTITY = {
    "GIT_AUTHOR_NAME": "centernet-patch miniature",
    "GIT_AUTHOR_EMAIL": "miniature@centernet-patch.invalid",
    "GIT_AUTHOR_DATE": "2019-11-01T00:00:00+00:00",
    "GIT_COMMITTER_NAME": "centernet-patch miniature",
    "GIT_COMMITTER_EMAIL": "miniature@centernet-patch.invalid",
    "GIT_COMMITTER_DATE": "2019-11-01T00:00:00+00:00",
}
COMMIT_MESSAGE = "CenterNet miniature (written by centernet-patch)"

# Paths whose presence says "this tree has CenterNet's layout" (checked by the tests).
LAYOUT_MARKERS: Tuple[str, ...] = (
    "src/lib/opts.py",
    "src/lib/models/model.py",
    "src/lib/models/decode.py",
    "src/lib/models/networks/pose_dla_dcn.py",
    "src/lib/models/networks/resnet_dcn.py",
    "src/lib/models/networks/DCNv2/dcn_v2.py",
)


def template_files() -> Dict[str, bytes]:
    """Relative path (posix) in the miniature -> file content, in sorted order."""
    files: Dict[str, bytes] = {}
    for path in sorted(TEMPLATE_DIR.rglob("*")):
        if not path.is_file() or "__pycache__" in path.parts or path.suffix == ".pyc":
            continue
        parts = list(path.relative_to(TEMPLATE_DIR).parts)
        if parts[-1].startswith(_DOT_PREFIX):
            parts[-1] = "." + parts[-1][len(_DOT_PREFIX):]
        files["/".join(parts)] = path.read_bytes()
    return dict(sorted(files.items()))


def _git(dest: Path, *args: str) -> str:
    env = dict(os.environ)
    env.update(_COMMIT_IDENTITY)
    # the user's and the system's git configuration must not change the commit
    env.update({"GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": os.devnull,
                "GIT_TERMINAL_PROMPT": "0"})
    command = ["git", "-c", "commit.gpgsign=false", "-c", "core.autocrlf=false",
               "-c", "init.defaultBranch=master", *args]
    try:
        done = subprocess.run(command, cwd=dest, env=env, capture_output=True, text=True)
    except FileNotFoundError:
        raise MissingDependencyError(
            "git executable not found: creating the CenterNet miniature needs git",
            tip="install git (e.g. `apt-get install git`)") from None
    if done.returncode != 0:
        raise TargetError(f"creating the miniature in {dest} failed: `{' '.join(command)}` "
                          f"exited {done.returncode}: {done.stderr.strip()}")
    return done.stdout


def create_miniature(dest: Path) -> Path:
    """Write the miniature as a one-commit git repository at ``dest`` and return it.

    ``dest`` must be missing or an empty directory. The commit is deterministic.
    """
    dest = Path(dest).expanduser().absolute()
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise TargetError(f"cannot create the CenterNet miniature in {dest}: it exists and "
                          f"is not an empty directory",
                          tip="pass a new path or an empty directory")
    dest.mkdir(parents=True, exist_ok=True)
    files = template_files()
    for relative, content in files.items():
        path = dest / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
        path.chmod(0o644)
    _git(dest, "init", "-q")
    _git(dest, "symbolic-ref", "HEAD", "refs/heads/master")
    _git(dest, "add", "--", *files)
    _git(dest, "commit", "-q", "--no-verify", "-m", COMMIT_MESSAGE)
    return dest


def miniature_files() -> List[str]:
    """The relative paths the miniature contains (what ``git ls-files`` lists)."""
    return list(template_files())
