"""locate_or_clone against a local bare repository (file:// URL): no network needed."""
from __future__ import annotations

import inspect
from pathlib import Path

import pytest

from conftest import git, write_fake_centernet
from patcher import clone
from patcher.clone import (DEFAULT_UPSTREAM, PINNED_COMMIT, is_centernet_tree,
                           locate_or_clone)
from patcher.errors import (CloneError, MissingDependencyError, NetworkError, TargetError)
from patcher.progress import RecordingSink


def snapshot(root: Path) -> dict:
    """Every file under root with its bytes: proves a failed call touched nothing."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file()}


def test_defaults_are_the_official_repository_at_the_pinned_commit():
    parameters = inspect.signature(locate_or_clone).parameters
    assert parameters["ref"].default == PINNED_COMMIT
    assert parameters["upstream"].default == DEFAULT_UPSTREAM
    assert PINNED_COMMIT == "4c50fd3a46bdf63dbf2082c5cbb3458d39579e6c"
    assert DEFAULT_UPSTREAM == "https://github.com/xingyizhou/CenterNet.git"


def test_is_centernet_tree_needs_every_marker(tmp_path):
    assert not is_centernet_tree(tmp_path / "missing")
    tree = write_fake_centernet(tmp_path / "tree")
    assert is_centernet_tree(tree)
    (tree / "src/lib/models/model.py").unlink()
    assert not is_centernet_tree(tree)


def test_clone_at_the_pinned_ref_creates_parents_and_detaches_there(upstream, tmp_path):
    target = tmp_path / "new" / "CenterNet"
    sink = RecordingSink()
    result = locate_or_clone(target, upstream=upstream.url, ref=upstream.commits[0], sink=sink)
    assert result.cloned and result.warnings == []
    assert result.path == target and result.commit == upstream.commits[0]
    assert git(target, "rev-parse", "HEAD") == upstream.commits[0]
    assert is_centernet_tree(target)
    assert not (target / "LATER.txt").exists()  # the second commit is not checked out
    assert any(kind == "step" and "Cloning" in title for kind, title in sink.events)


@pytest.mark.parametrize("ref_kind", ["sha", "tag", "branch"])
def test_clone_at_another_ref(upstream, tmp_path, ref_kind):
    ref = {"sha": upstream.commits[1], "tag": "v-second", "branch": upstream.branch}[ref_kind]
    result = locate_or_clone(tmp_path / "cn", upstream=upstream.url, ref=ref)
    assert result.commit == upstream.commits[1]
    assert (tmp_path / "cn" / "LATER.txt").is_file()


def test_clone_without_ref_keeps_the_default_branch(upstream, tmp_path):
    result = locate_or_clone(tmp_path / "cn", upstream=upstream.url, ref=None)
    assert result.commit == upstream.commits[1]


def test_clone_into_an_existing_empty_directory(upstream, tmp_path):
    target = tmp_path / "empty"
    target.mkdir()
    result = locate_or_clone(target, upstream=upstream.url, ref=upstream.commits[0])
    assert result.cloned and is_centernet_tree(target)


def test_existing_checkout_at_the_ref_is_used_silently(upstream, tmp_path):
    target = tmp_path / "cn"
    locate_or_clone(target, upstream=upstream.url, ref=upstream.commits[0])
    again = locate_or_clone(target, upstream="http://127.0.0.1:9/never-contacted.git",
                            ref=upstream.commits[0])
    assert not again.cloned and again.warnings == []
    assert again.commit == upstream.commits[0]


def test_existing_checkout_at_another_commit_is_used_with_a_warning(upstream, tmp_path):
    target = tmp_path / "cn"
    locate_or_clone(target, upstream=upstream.url, ref=upstream.commits[1])
    before = snapshot(target)
    sink = RecordingSink()
    result = locate_or_clone(target, ref=upstream.commits[0], sink=sink)
    assert not result.cloned and result.commit == upstream.commits[1]
    assert len(result.warnings) == 1
    assert "codemods will detect drift" in result.warnings[0]
    assert upstream.commits[1][:12] in result.warnings[0]
    assert sink.messages("warn") == result.warnings
    assert snapshot(target) == before


def test_existing_tree_without_git_is_used_with_a_warning(tmp_path):
    tree = write_fake_centernet(tmp_path / "plain")
    result = locate_or_clone(tree)
    assert not result.cloned and result.commit is None
    assert "not a git checkout" in result.warnings[0]


def test_unreachable_url_suggests_a_local_path_or_mirror(tmp_path):
    target = tmp_path / "a" / "cn"
    # port 9 (discard) on localhost refuses at once: "no network" without waiting for DNS
    with pytest.raises(NetworkError, match=r"cannot clone http://127\.0\.0\.1:9/CenterNet\.git"
                       r": the repository could not be reached") as caught:
        locate_or_clone(target, upstream="http://127.0.0.1:9/CenterNet.git")
    assert "--upstream" in caught.value.tip and "mirror" in caught.value.tip
    assert not (tmp_path / "a").exists()  # nothing half-cloned is left behind


def test_missing_local_repository_is_reported(tmp_path):
    url = (tmp_path / "no-such.git").as_uri()
    with pytest.raises(NetworkError, match="does not appear to be a git repository"):
        locate_or_clone(tmp_path / "cn", upstream=url)
    assert not (tmp_path / "cn").exists()


def test_unknown_ref_is_named_and_the_clone_removed(upstream, tmp_path):
    target = tmp_path / "deep" / "cn"
    with pytest.raises(CloneError, match=r"unknown ref 'no-such-ref': no commit, branch or tag"
                       ) as caught:
        locate_or_clone(target, upstream=upstream.url, ref="no-such-ref")
    assert "--ref" in caught.value.tip
    assert not (tmp_path / "deep").exists()


def test_unknown_ref_in_an_existing_empty_directory_empties_it_again(upstream, tmp_path):
    target = tmp_path / "empty"
    target.mkdir()
    with pytest.raises(CloneError, match="unknown ref"):
        locate_or_clone(target, upstream=upstream.url, ref="f" * 40)
    assert target.is_dir() and list(target.iterdir()) == []


def test_git_checkout_that_is_not_centernet_is_refused(upstream, tmp_path):
    other = tmp_path / "other"
    other.mkdir()
    (other / "main.py").write_text("print('another project')\n")
    git(other, "init", "-q")
    before = snapshot(other)
    with pytest.raises(TargetError, match=r"exists but is not a CenterNet tree: it is a git "
                       r"checkout without src/lib/opts.py"):
        locate_or_clone(other, upstream=upstream.url)
    assert snapshot(other) == before


def test_non_empty_directory_that_is_not_a_checkout_is_refused(upstream, tmp_path):
    target = tmp_path / "notes"
    target.mkdir()
    (target / "todo.txt").write_text("keep me\n")
    with pytest.raises(TargetError, match="is not empty and not a git checkout") as caught:
        locate_or_clone(target, upstream=upstream.url)
    assert "empty directory" in caught.value.tip
    assert (target / "todo.txt").read_text() == "keep me\n"


def test_target_that_is_a_file_is_refused(tmp_path):
    target = tmp_path / "file"
    target.write_text("x")
    with pytest.raises(TargetError, match="exists and is not a directory"):
        locate_or_clone(target)


def test_upstream_that_is_not_centernet_is_refused_and_removed(tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    (work / "README").write_text("another project\n")
    git(work, "init", "-q")
    git(work, "add", "-A")
    git(work, "commit", "-q", "-m", "x")
    with pytest.raises(TargetError, match="is not a CenterNet tree"):
        locate_or_clone(tmp_path / "cn", upstream=work.as_uri(), ref=None)
    assert not (tmp_path / "cn").exists()


def test_git_missing_is_a_missing_dependency(upstream, tmp_path, monkeypatch):
    empty_bin = tmp_path / "bin"
    empty_bin.mkdir()
    monkeypatch.setenv("PATH", str(empty_bin))
    with pytest.raises(MissingDependencyError, match="git executable not found") as caught:
        locate_or_clone(tmp_path / "cn", upstream=upstream.url)
    assert "install git" in caught.value.tip
    assert not (tmp_path / "cn").exists()


def test_git_python_import_failure_is_a_missing_dependency(tmp_path, monkeypatch):
    import builtins

    real_import = builtins.__import__

    def import_without_git(name, *args, **kwargs):
        if name == "git":
            raise ImportError("Failed to initialize: Bad git executable.")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", import_without_git)
    with pytest.raises(MissingDependencyError, match="GitPython cannot use git: Failed to "
                       "initialize"):
        clone._load_git()


def test_existing_checkout_is_used_without_git_with_a_warning(upstream, tmp_path, monkeypatch):
    target = tmp_path / "cn"
    locate_or_clone(target, upstream=upstream.url, ref=upstream.commits[0])
    monkeypatch.setenv("PATH", str(tmp_path / "no-bin"))
    result = locate_or_clone(target)
    assert not result.cloned and result.commit is None
    assert "git executable not found" in result.warnings[0]
    assert "codemods will detect drift" in result.warnings[0]
