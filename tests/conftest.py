"""Shared fixtures: a CenterNet-shaped git upstream served from a local bare repository."""
from __future__ import annotations

import importlib
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import List

import pytest

# a fixed identity and no user/system config: commits in tests are reproducible anywhere
GIT_ENV = {
    "GIT_AUTHOR_NAME": "centernet-patch tests",
    "GIT_AUTHOR_EMAIL": "tests@centernet-patch.invalid",
    "GIT_COMMITTER_NAME": "centernet-patch tests",
    "GIT_COMMITTER_EMAIL": "tests@centernet-patch.invalid",
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_TERMINAL_PROMPT": "0",
}


def git(cwd: Path, *args: str) -> str:
    """Run git in ``cwd`` with the tests' identity; its stdout, stripped."""
    env = {**os.environ, **GIT_ENV}
    done = subprocess.run(["git", "-c", "init.defaultBranch=master", *args], cwd=cwd, env=env,
                          check=True, capture_output=True, text=True)
    return done.stdout.strip()


def write_fake_centernet(root: Path) -> Path:
    """The smallest tree with CenterNet's marker paths (used when the miniature is absent)."""
    lib = root / "src" / "lib"
    (lib / "models" / "networks").mkdir(parents=True, exist_ok=True)
    (lib / "opts.py").write_text("# options of a fake CenterNet tree\n")
    (lib / "models" / "model.py").write_text("# model factory of a fake CenterNet tree\n")
    (lib / "models" / "networks" / "__init__.py").write_text("")
    return root


def make_centernet_source(dest: Path) -> Path:
    """The built-in miniature when it is delivered, else the fake marker tree."""
    try:
        create_miniature = importlib.import_module("patcher.miniature").create_miniature
    except (ModuleNotFoundError, AttributeError):  # not delivered yet
        return write_fake_centernet(dest)
    return Path(create_miniature(dest))


@dataclass
class Upstream:
    url: str  # file:// URL of a bare repository
    bare: Path
    commits: List[str]  # oldest first; commits[0] plays the pinned commit
    branch: str  # the bare repository's default branch


def _commit_all(work: Path, message: str) -> str:
    if not (work / ".git").exists():
        git(work, "init", "-q")
    git(work, "add", "-A")
    status = git(work, "status", "--porcelain")
    if status:
        git(work, "commit", "-q", "-m", message)
    return git(work, "rev-parse", "HEAD")


@pytest.fixture(scope="session")
def upstream(tmp_path_factory) -> Upstream:
    """A CenterNet-shaped upstream with two commits, served by file:// URL."""
    base = tmp_path_factory.mktemp("upstream")
    work = make_centernet_source(base / "work")
    first = _commit_all(work, "first: the commit the tests pin")
    (work / "LATER.txt").write_text("only in the second commit\n")
    second = _commit_all(work, "second: a later upstream commit")
    git(work, "tag", "v-second", second)
    branch = git(work, "rev-parse", "--abbrev-ref", "HEAD")
    bare = base / "CenterNet.git"
    git(base, "clone", "-q", "--bare", str(work), str(bare))
    return Upstream(url=bare.as_uri(), bare=bare, commits=[first, second], branch=branch)


@pytest.fixture(autouse=True)
def plain_console(monkeypatch):
    """CLI output in tests: no colour codes, 120 columns (UI's default off a terminal),
    whatever the CI runner's environment says."""
    for name in ("COLUMNS", "LINES", "FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE",
                 "CLICOLOR_FORCE"):
        monkeypatch.delenv(name, raising=False)
