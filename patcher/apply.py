"""Plan, apply, check and revert the codemods on a CenterNet tree: all or nothing.

The core API (silent; progress through ``sink``; typed errors from patcher.errors):

- :func:`plan` computes every change in memory (codemods in order, then the placed file
  sets, then the optional torch edit) and never writes. Drift or an unparsable file
  raises before anything is written.
- :func:`apply` plans, refuses target files with uncommitted changes (unless ``force``),
  then writes: each file atomically (temporary file + ``os.replace``), and all files or
  none (a failure part-way undoes the writes already made, in reverse order). The
  manifest ``.centernet-patch/manifest.json`` records every file touched with its original
  and new SHA-256 and the tool version; the original bytes are kept beside it, so
  :func:`revert` restores them byte for byte and removes what was added.
- :func:`status` and :func:`check` say what is applied, pending or drifted.

A lock file (``.centernet-patch.lock``) keeps two processes from patching one tree at once.
"""
from __future__ import annotations

import difflib
import hashlib
import json
import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from patcher import __version__
from patcher.codemods import CODEMODS, PLACED, TORCH_CODEMOD
from patcher.codemods.base import CHANGED, SKIPPED, CodemodResult, Target, run_codemod
from patcher.codemods.iter_filter import NOT_NEEDED_REASON, needs_patch, resolve_function_py
from patcher.codemods.placed_files import is_build_output
from patcher.errors import (DirtyTreeError, DriftError, LockError, PatchError, SourceParseError,
                            TargetError)
from patcher.progress import NULL_SINK, ProgressSink
from patcher.trt_build import BUILD_DIRNAME as PLUGIN_BUILD_DIRNAME

MANIFEST_DIR = ".centernet-patch"
MANIFEST_FILE = "manifest.json"
ORIGINALS_DIR = "originals"
LOCK_FILE = ".centernet-patch.lock"
TORCH_BACKUP_SUFFIX = ".centernet-patch-backup"
MANIFEST_FORMAT = 1
DEFAULT_LOCK_TIMEOUT_S = 10.0

# states reported by status()
STATE_APPLIED = "applied"
STATE_PENDING = "pending"
STATE_DRIFTED = "drifted"
STATE_NOT_NEEDED = "not-needed"

# The files a CenterNet tree must have before any codemod runs.
_TREE_MARKERS = ("src/lib/opts.py", "src/lib/models/model.py", "src/lib/models/networks")


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# ----------------------------------------------------------------------------- the plan
@dataclass
class FileChange:
    """One file's new content. ``path`` is relative (posix) or, for torch, absolute."""

    path: str
    old: Optional[bytes]  # None: the file is added
    new: bytes
    by: List[str]  # the codemods / placed sets that produced the change
    external: bool = False  # outside the target tree (the torch file)

    @property
    def kind(self) -> str:
        return "added" if self.old is None else "modified"


@dataclass
class Plan:
    tree: Path
    changes: List[FileChange] = field(default_factory=list)
    results: List[CodemodResult] = field(default_factory=list)
    placed: Dict[str, List[str]] = field(default_factory=dict)  # set -> files to place
    warnings: List[str] = field(default_factory=list)
    notes: List[str] = field(default_factory=list)  # e.g. "iter_filter: not needed ..."

    @property
    def is_empty(self) -> bool:
        return not self.changes

    @property
    def changed_files(self) -> List[str]:
        return [change.path for change in self.changes]

    def diff(self, *, full: bool = False) -> str:
        """A unified diff of the modified files. Added files are listed as
        ``Only in the patched tree: PATH (N lines)`` unless ``full``."""
        chunks: List[str] = []
        for change in self.changes:
            label = change.path
            try:
                new_text = change.new.decode("utf-8")
            except UnicodeDecodeError:
                chunks.append(f"Binary file {label} differs\n")
                continue
            if change.old is None and not full:
                chunks.append(f"Only in the patched tree: {label} "
                              f"({len(new_text.splitlines())} lines)\n")
                continue
            old_text = change.old.decode("utf-8") if change.old is not None else ""
            # tree files as git names them (a/..., b/...); the torch file by its own path
            from_name, to_name = ((label, label) if change.external
                                  else (f"a/{label}", f"b/{label}"))
            if change.old is None:
                from_name = "/dev/null"
            diff = difflib.unified_diff(old_text.splitlines(keepends=True),
                                        new_text.splitlines(keepends=True),
                                        fromfile=from_name, tofile=to_name)
            chunks.append("".join(line if line.endswith("\n") else line + "\n\\ No newline "
                                  "at end of file\n" for line in diff))
        return "".join(chunks)


@dataclass
class ApplyReport:
    changed_files: List[str]
    already_applied: bool
    warnings: List[str]
    notes: List[str] = field(default_factory=list)
    manifest: Optional[Path] = None
    changes: List[FileChange] = field(default_factory=list)  # what changed, and by what


@dataclass
class RevertReport:
    restored_files: List[str]
    removed_files: List[str]
    warnings: List[str]
    nothing_to_revert: bool = False


# ------------------------------------------------------------------------------ helpers
def _check_tree(tree: Path) -> Path:
    tree = Path(tree).expanduser().absolute()
    if not tree.is_dir():
        raise TargetError(f"{tree} does not exist or is not a directory",
                          tip="pass a CenterNet checkout (apply clones one into a new path)")
    missing = [marker for marker in _TREE_MARKERS if not (tree / marker).exists()]
    if missing:
        raise TargetError(f"{tree} is not a CenterNet tree: missing {', '.join(missing)}",
                          tip="pass the root of a CenterNet checkout")
    return tree


def _read_text(tree: Path, relative: str) -> Tuple[bytes, str]:
    data = (tree / relative).read_bytes()
    try:
        return data, data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise SourceParseError(f"{relative} is not UTF-8 text ({error}); nothing was "
                               f"written") from None


def load_manifest(tree: Path) -> Optional[dict]:
    path = Path(tree) / MANIFEST_DIR / MANIFEST_FILE
    if not path.is_file():
        return None
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise PatchError(f"{path} is unreadable ({error}): cannot tell what was patched",
                         tip="restore the tree with git (`git checkout -- . && git clean "
                             "-fd`) and delete the manifest directory") from None
    if manifest.get("format") != MANIFEST_FORMAT:
        raise PatchError(f"{path}: manifest format {manifest.get('format')!r}, expected "
                         f"{MANIFEST_FORMAT}; it was written by another centernet-patch")
    return manifest


def _codemod_targets(codemod, tree: Path) -> List[Target]:
    targets = list(codemod.TARGETS)
    extra = getattr(codemod, "extra_targets", None)
    if extra is not None:
        targets += extra(tree)
    return targets


def _run_tree_codemods(tree: Path, sink: ProgressSink):
    """Run every codemod on an in-memory copy of its files: (originals, texts, results)."""
    originals: Dict[str, bytes] = {}
    texts: Dict[str, str] = {}
    results: List[CodemodResult] = []
    by: Dict[str, List[str]] = {}
    for codemod in CODEMODS:
        with sink.step(f"Planning {codemod.NAME}"):
            for target in _codemod_targets(codemod, tree):
                if target.path not in texts:
                    if not (tree / target.path).is_file():
                        if target.required:
                            raise DriftError(
                                f"{target.path}: {codemod.NAME}: expected "
                                f"{target.construct}; found no such file; nothing was "
                                f"written", tip="is this a CenterNet checkout at the "
                                                "pinned commit?")
                        continue
                    originals[target.path], texts[target.path] = _read_text(tree, target.path)
                result = run_codemod(codemod, target, texts[target.path])
                results.append(result)
                if result.outcome == CHANGED:
                    texts[target.path] = result.new_source
                    by.setdefault(target.path, []).append(codemod.NAME)
    return originals, texts, results, by


def plan(tree: Path, *, patch_torch: Optional[Path] = None,
         sink: ProgressSink = NULL_SINK) -> Plan:
    """Every change ``apply`` would make, computed in memory. Writes nothing."""
    tree = _check_tree(tree)
    manifest = load_manifest(tree) or {"files": {}}
    result = Plan(tree=tree)
    originals, texts, result.results, by = _run_tree_codemods(tree, sink)
    for codemod_result in result.results:
        result.warnings += codemod_result.messages if codemod_result.outcome != SKIPPED else []
    for path, text in texts.items():
        new = text.encode("utf-8")
        if new != originals[path]:
            result.changes.append(FileChange(path, originals[path], new, by[path]))

    with sink.step("Planning the placed files"):
        for placed in PLACED:
            needed = []
            for relative, content in placed.files().items():
                destination = tree / relative
                if destination.is_file():
                    current = destination.read_bytes()
                    if current == content:
                        continue
                    if manifest["files"].get(relative, {}).get("action") != "added":
                        raise PatchError(
                            f"{placed.NAME}: placing {relative} would overwrite a file of "
                            f"the target tree that centernet-patch did not place; nothing "
                            f"was written", tip=f"move {tree / relative} away and re-run")
                    result.changes.append(FileChange(relative, current, content,
                                                     [placed.NAME]))
                elif destination.exists():
                    raise PatchError(f"{placed.NAME}: {relative} exists and is not a file; "
                                     f"nothing was written")
                else:
                    result.changes.append(FileChange(relative, None, content, [placed.NAME]))
                needed.append(relative)
            result.placed[placed.NAME] = needed

    if patch_torch is not None:
        function_py = resolve_function_py(patch_torch)
        data, text = function_py.read_bytes(), function_py.read_text(encoding="utf-8")
        torch_result = run_codemod(TORCH_CODEMOD, Target(str(function_py),
                                                         TORCH_CODEMOD.TARGETS[0].construct),
                                   text)
        result.results.append(torch_result)
        if torch_result.outcome == CHANGED:
            result.changes.append(FileChange(str(function_py), data,
                                             torch_result.new_source.encode("utf-8"),
                                             [TORCH_CODEMOD.NAME], external=True))
        elif torch_result.outcome == SKIPPED:
            result.notes += [f"{TORCH_CODEMOD.NAME}: {m}" for m in torch_result.messages]
    return result


# ---------------------------------------------------------------------------- git, lock
def _git_dirty(tree: Path, paths: Sequence[str]) -> Optional[List[str]]:
    """The given paths that git reports as changed or untracked; None without git."""
    if not paths:
        return []
    try:
        done = subprocess.run(
            ["git", "-C", str(tree), "status", "--porcelain=v1", "-z",
             "--untracked-files=all", "--", *paths], capture_output=True)
    except FileNotFoundError:
        return None
    if done.returncode != 0:
        return None
    entries = [entry for entry in done.stdout.decode("utf-8", "replace").split("\0") if entry]
    return sorted({entry[3:] for entry in entries if len(entry) > 3})


class TreeLock:
    """An exclusive lock on a tree: a file created with O_EXCL, holding pid and host.

    A second process waits up to ``timeout`` seconds, then raises LockError. A lock left
    by a process that no longer runs (same host) is taken over with a warning.
    """

    def __init__(self, tree: Path, timeout: float = DEFAULT_LOCK_TIMEOUT_S,
                 sink: ProgressSink = NULL_SINK) -> None:
        self.path = Path(tree) / LOCK_FILE
        self.timeout = timeout
        self.sink = sink
        self.token = {"pid": os.getpid(), "host": socket.gethostname(),
                      "since": time.strftime("%Y-%m-%d %H:%M:%S")}

    def _holder(self) -> dict:
        try:
            return json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}

    def _stale(self, holder: dict) -> bool:
        if holder.get("host") != socket.gethostname() or not isinstance(holder.get("pid"), int):
            return False
        try:
            os.kill(holder["pid"], 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            return False
        return False

    def __enter__(self) -> "TreeLock":
        deadline = time.monotonic() + self.timeout
        while True:
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                holder = self._holder()
                if self._stale(holder):
                    self.sink.warn(f"removing a stale lock {self.path} (pid {holder['pid']} "
                                   f"is not running)")
                    self.path.unlink(missing_ok=True)
                    continue
                if time.monotonic() >= deadline:
                    who = (f"pid {holder.get('pid')} on {holder.get('host')} since "
                           f"{holder.get('since')}") if holder else "another process"
                    raise LockError(
                        f"{self.path.parent} is locked by another centernet-patch ({who}); "
                        f"lock file {self.path}",
                        tip="wait for it to finish; if no such process runs, delete the "
                            "lock file") from None
                time.sleep(0.1)
                continue
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                json.dump(self.token, handle)
            return self

    def __exit__(self, *exc) -> None:
        if self._holder().get("pid") == self.token["pid"]:
            self.path.unlink(missing_ok=True)


# ------------------------------------------------------------------------------- writes
def _atomic_write(path: Path, data: bytes, mode: Optional[int] = None) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same directory."""
    temporary = path.with_name(f".{path.name}.centernet-patch-tmp")
    try:
        with open(temporary, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        if mode is not None:
            os.chmod(temporary, mode)
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)  # a half-written temporary file is never left
        raise


class _Transaction:
    """Writes that are undone in reverse order unless committed."""

    def __init__(self) -> None:
        self.undo: List[Tuple[str, Path, Optional[bytes], Optional[int]]] = []

    def _make_dirs(self, directory: Path) -> None:
        missing = []
        while not directory.exists():
            missing.append(directory)
            directory = directory.parent
        for created in reversed(missing):
            created.mkdir()
            self.undo.append(("rmdir", created, None, None))

    def write(self, path: Path, data: bytes) -> None:
        self._make_dirs(path.parent)
        previous = path.read_bytes() if path.is_file() else None
        mode = path.stat().st_mode & 0o7777 if path.is_file() else 0o644
        _atomic_write(path, data, mode)
        self.undo.append(("write", path, previous, mode))

    def remove(self, path: Path) -> None:
        previous = path.read_bytes()
        mode = path.stat().st_mode & 0o7777
        path.unlink()
        self.undo.append(("write", path, previous, mode))

    def rollback(self) -> List[str]:
        problems = []
        for action, path, previous, mode in reversed(self.undo):
            try:
                if action == "rmdir":
                    path.rmdir()
                elif previous is None:
                    path.unlink(missing_ok=True)
                else:
                    _atomic_write(path, previous, mode)
            except OSError as error:
                problems.append(f"{path}: {error}")
        self.undo.clear()
        return problems


def _original_store_path(entry_path: str) -> str:
    if os.path.isabs(entry_path):
        return f"{ORIGINALS_DIR}/external/{_sha256(entry_path.encode())[:16]}/" \
               f"{os.path.basename(entry_path)}"
    return f"{ORIGINALS_DIR}/{entry_path}"


def _new_manifest(old: Optional[dict], changes: List[FileChange],
                  created_dirs: List[str]) -> dict:
    manifest = old or {"files": {}, "created_dirs": []}
    manifest.update({"tool": "centernet-patch", "version": __version__,
                     "format": MANIFEST_FORMAT})
    for change in changes:
        entry = manifest["files"].get(change.path)
        if entry is None:
            entry = {"action": "added" if change.old is None else "modified", "by": []}
            if change.old is not None:
                entry["original_sha256"] = _sha256(change.old)
                entry["original"] = _original_store_path(change.path)
            if change.external:
                entry["external"] = True
                entry["backup"] = change.path + TORCH_BACKUP_SUFFIX
            manifest["files"][change.path] = entry
        entry["by"] = sorted(set(entry["by"]) | set(change.by))
        entry["new_sha256"] = _sha256(change.new)
    manifest["created_dirs"] = sorted(set(manifest.get("created_dirs", [])) | set(created_dirs))
    manifest["files"] = dict(sorted(manifest["files"].items()))
    return manifest


def _dirs_to_create(tree: Path, changes: List[FileChange]) -> List[str]:
    created = set()
    for change in changes:
        if change.external:
            continue
        directory = (tree / change.path).parent
        while directory != tree and not directory.exists():
            created.add(directory.relative_to(tree).as_posix())
            directory = directory.parent
    return sorted(created)


# ------------------------------------------------------------------------------ the API
def apply(tree: Path, *, force: bool = False, patch_torch: Optional[Path] = None,
          sink: ProgressSink = NULL_SINK,
          lock_timeout: float = DEFAULT_LOCK_TIMEOUT_S) -> ApplyReport:
    """Apply every pending change to ``tree``; all files or none. See the module doc."""
    tree = _check_tree(tree)
    with TreeLock(tree, lock_timeout, sink):
        the_plan = plan(tree, patch_torch=patch_torch, sink=sink)
        warnings = the_plan.warnings
        for warning in warnings:
            sink.warn(warning)
        if the_plan.is_empty:
            return ApplyReport([], True, warnings, the_plan.notes,
                               tree / MANIFEST_DIR / MANIFEST_FILE)
        manifest = load_manifest(tree)
        in_tree = [c.path for c in the_plan.changes if not c.external]
        dirty = _git_dirty(tree, in_tree)
        if dirty is None:
            warnings.append(f"{tree} is not a git checkout: uncommitted changes to the "
                            f"target files cannot be detected")
            dirty = []
        ours = (manifest or {"files": {}})["files"]
        dirty = [path for path in dirty if not (
            path in ours and (tree / path).is_file()
            and _sha256((tree / path).read_bytes()) == ours[path]["new_sha256"])]
        dirty = [path for path in dirty if path in in_tree]
        if dirty and not force:
            raise DirtyTreeError(
                f"refusing to patch files with uncommitted changes: {', '.join(dirty)}; "
                f"nothing was written",
                tip="commit or stash them first, or pass --force (--revert then restores "
                    "these files as they are now)")

        created_dirs = _dirs_to_create(tree, the_plan.changes)
        new_manifest = _new_manifest(manifest, the_plan.changes, created_dirs)
        transaction = _Transaction()
        store = tree / MANIFEST_DIR
        try:
            with sink.step(f"Writing {len(the_plan.changes)} files"):
                transaction.write(store / ".gitignore", b"# written by centernet-patch\n*\n")
                for change in the_plan.changes:  # originals first: revert needs them
                    entry = new_manifest["files"][change.path]
                    if change.old is not None and "original" in entry and \
                            not (store / entry["original"]).is_file():
                        transaction.write(store / entry["original"], change.old)
                    if change.external and not Path(entry["backup"]).exists():
                        transaction.write(Path(entry["backup"]), change.old)
                for change in the_plan.changes:
                    path = Path(change.path) if change.external else tree / change.path
                    transaction.write(path, change.new)
                transaction.write(store / MANIFEST_FILE,
                                  (json.dumps(new_manifest, indent=2) + "\n").encode())
        except BaseException as error:
            problems = transaction.rollback()
            if problems:
                raise PatchError(
                    f"writing failed ({error}) and undoing it failed for: "
                    f"{'; '.join(problems)}",
                    tip=f"restore those files with git; the manifest is in {store}") from error
            if isinstance(error, OSError):
                raise PatchError(f"writing {getattr(error, 'filename', '') or 'a file'} "
                                 f"failed: {error.strerror or error}; every file was put "
                                 f"back as it was", tip="check permissions and free "
                                                        "space") from error
            raise
        return ApplyReport(the_plan.changed_files, False, warnings, the_plan.notes,
                           store / MANIFEST_FILE, the_plan.changes)


def check(tree: Path, *, patch_torch: Optional[Path] = None) -> bool:
    """True when ``tree`` needs no change (raises on drift)."""
    return plan(tree, patch_torch=patch_torch).is_empty


def _installed_torch_version() -> Optional[str]:
    try:
        from importlib.metadata import version
        return version("torch")
    except Exception:  # no torch installed: nothing to say about it
        return None


def status(tree: Path) -> List[Tuple[str, str, str]]:
    """(codemod or placed set, applied|pending|drifted|not-needed, detail) for each."""
    tree = _check_tree(tree)
    rows: List[Tuple[str, str, str]] = []
    for codemod in CODEMODS:
        states, details = [], []
        texts: Dict[str, str] = {}
        try:
            for target in _codemod_targets(codemod, tree):
                if not (tree / target.path).is_file():
                    if target.required:
                        raise PatchError(f"{target.path}: missing (expected "
                                         f"{target.construct})")
                    continue
                texts.setdefault(target.path, _read_text(tree, target.path)[1])
                result = run_codemod(codemod, target, texts[target.path])
                states.append(STATE_PENDING if result.outcome == CHANGED else STATE_APPLIED)
                details += [f"{target.path}: {result.outcome}"] + result.messages
        except PatchError as error:
            rows.append((codemod.NAME, STATE_DRIFTED, str(error)))
            continue
        state = STATE_PENDING if STATE_PENDING in states else STATE_APPLIED
        rows.append((codemod.NAME, state, "; ".join(details)))
    for placed in PLACED:
        files = placed.files()
        pending = [path for path, content in files.items()
                   if not (tree / path).is_file() or (tree / path).read_bytes() != content]
        if not files:
            rows.append((placed.NAME, STATE_APPLIED, "nothing to place"))
        elif pending:
            rows.append((placed.NAME, STATE_PENDING,
                         f"{len(pending)} of {len(files)} files to place"))
        else:
            rows.append((placed.NAME, STATE_APPLIED, f"{len(files)} files placed"))
    rows.append(_torch_status(tree))
    return rows


def _torch_status(tree: Path) -> Tuple[str, str, str]:
    manifest = load_manifest(tree) or {"files": {}}
    for path, entry in manifest["files"].items():
        if entry.get("external"):
            current = Path(path).read_bytes() if Path(path).is_file() else b""
            if _sha256(current) == entry["new_sha256"]:
                return (TORCH_CODEMOD.NAME, STATE_APPLIED, f"{path} patched")
            return (TORCH_CODEMOD.NAME, STATE_DRIFTED,
                    f"{path} changed since it was patched (reinstalled torch?)")
    version = _installed_torch_version()
    if version is None or not needs_patch(version):
        return (TORCH_CODEMOD.NAME, STATE_NOT_NEEDED,
                f"not needed on torch {version or '(not installed)'}: {NOT_NEEDED_REASON}")
    return (TORCH_CODEMOD.NAME, STATE_PENDING,
            f"torch {version} needs it: run `centernet-patch apply TARGET --patch-torch "
            f"PATH/TO/torch`")


def revert(tree: Path, sink: ProgressSink = NULL_SINK, *, force: bool = False,
           lock_timeout: float = DEFAULT_LOCK_TIMEOUT_S) -> RevertReport:
    """Restore every file ``apply`` modified, byte for byte, and remove what it added."""
    tree = _check_tree(tree)
    with TreeLock(tree, lock_timeout, sink):
        manifest = load_manifest(tree)
        if manifest is None:
            return RevertReport([], [], [], nothing_to_revert=True)
        store = tree / MANIFEST_DIR
        changed_since = []
        for path, entry in manifest["files"].items():
            file = Path(path) if entry.get("external") else tree / path
            if not file.is_file():
                continue
            current = _sha256(file.read_bytes())
            if current not in (entry["new_sha256"], entry.get("original_sha256")):
                changed_since.append(path)
        if changed_since and not force:
            raise DirtyTreeError(
                f"refusing to revert files changed since they were patched: "
                f"{', '.join(changed_since)}; nothing was written",
                tip="save your edits elsewhere, then re-run with --force to restore the "
                    "originals anyway")
        for path, entry in manifest["files"].items():
            if "original" in entry and not (store / entry["original"]).is_file():
                raise PatchError(f"cannot revert {path}: its original "
                                 f"{store / entry['original']} is missing; nothing was "
                                 f"written", tip="restore the tree with git instead")

        report = RevertReport([], [], [])
        with sink.step(f"Restoring {len(manifest['files'])} files"):
            for path, entry in manifest["files"].items():
                file = Path(path) if entry.get("external") else tree / path
                if entry["action"] == "modified":
                    original = (store / entry["original"]).read_bytes()
                    if not file.is_file() or file.read_bytes() != original:
                        mode = file.stat().st_mode & 0o7777 if file.is_file() else 0o644
                        _atomic_write(file, original, mode)
                    report.restored_files.append(path)
                    if entry.get("backup"):
                        Path(entry["backup"]).unlink(missing_ok=True)
                elif file.is_file():
                    file.unlink()
                    report.removed_files.append(path)
            report.warnings += _remove_created_dirs(tree, manifest.get("created_dirs", []))
            # `centernet-patch build` puts the TensorRT plugin's build beside the placed
            # files; it exists only because the tree was patched, so it goes with them.
            plugin_build = tree / PLUGIN_BUILD_DIRNAME
            if plugin_build.is_dir():
                shutil.rmtree(plugin_build)
                report.removed_files.append(PLUGIN_BUILD_DIRNAME + "/")
        shutil.rmtree(store)
        for warning in report.warnings:
            sink.warn(warning)
        return report


def _remove_created_dirs(tree: Path, created_dirs: List[str]) -> List[str]:
    """Remove the directories apply created, with build outputs left in them; keep (and
    warn about) any holding other files."""
    warnings = []
    for relative in sorted(created_dirs, key=lambda p: p.count("/"), reverse=True):
        directory = tree / relative
        if not directory.is_dir():
            continue
        for leftover in sorted(directory.iterdir()):
            if is_build_output(Path(leftover.name)):
                if leftover.is_dir() and not leftover.is_symlink():
                    shutil.rmtree(leftover)
                else:
                    leftover.unlink()
        try:
            directory.rmdir()
        except OSError:
            others = sorted(p.relative_to(tree).as_posix() for p in directory.iterdir())
            warnings.append(f"kept {relative}/: it holds files centernet-patch did not "
                            f"place: {', '.join(others[:5])}")
    return warnings
