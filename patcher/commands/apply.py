"""`centernet-patch apply`: patch a CenterNet checkout (cloning it first when needed)."""
from __future__ import annotations

import argparse
from pathlib import Path

HELP = "patch a CenterNet checkout for PyTorch 2.x (clones it first if TARGET is not one)"
DESCRIPTION = """\
Rewrite a CenterNet tree with the codemods (DCN import, optional task argument, unused
torchvision import, offline model construction) and place the DCN package and the export
scripts. All changes are planned in memory first: on drift or an unparsable file nothing
is written; writes are atomic and all-or-nothing. The manifest .centernet-patch/ in the
tree records every file (original and new SHA-256) so that --revert restores the tree
byte for byte. A second apply changes nothing and says "already applied".

If TARGET is not a CenterNet tree it is cloned from --upstream at the pinned commit
(--ref to override) first.

Exit codes: 0 done (or, with --check, nothing to do); 1 with --check when changes are
pending; 2 on drift, a dirty target file, a lock held by another process, bad input."""


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("target", metavar="TARGET", type=Path,
                        help="the CenterNet checkout (or where to clone it)")
    parser.add_argument("--upstream", metavar="URL", default=None,
                        help="repository to clone when TARGET is not a checkout "
                             "(default: the official GitHub repository; a local path or "
                             "file:// mirror works offline)")
    parser.add_argument("--ref", metavar="REF", default=None,
                        help="commit, tag or branch to check out after cloning "
                             "(default: the pinned upstream commit)")
    parser.add_argument("--force", action="store_true",
                        help="patch files with uncommitted changes too (--revert then "
                             "restores them as they are now); with --revert, restore files "
                             "edited since apply")
    modes = parser.add_mutually_exclusive_group()
    modes.add_argument("--diff", action="store_true",
                       help="print the changes as a unified diff and write nothing")
    modes.add_argument("--check", action="store_true",
                       help="write nothing; exit 1 if changes are pending, 0 if the tree is "
                            "fully patched")
    modes.add_argument("--revert", action="store_true",
                       help="restore every patched file byte for byte and remove what apply "
                            "added")
    parser.add_argument("--patch-torch", metavar="PATH", type=Path, default=None,
                        help="also apply the 2019 recipe's _iter_filter edit to this torch "
                             "(its autograd/function.py or its package directory) when that "
                             "torch needs it (torch 1.x); a backup is kept and --revert "
                             "restores it")


def _existing_tree(target: Path) -> Path:
    from patcher.errors import TargetError

    if not target.exists():
        raise TargetError(f"{target} does not exist; --diff, --check and --revert work on an "
                          f"existing CenterNet checkout",
                          tip=f"run `centernet-patch apply {target}` first")
    return target


def execute(args: argparse.Namespace, ui) -> int:
    from patcher import apply as core

    if args.revert:
        report = core.revert(_existing_tree(args.target), ui.sink, force=args.force)
        if report.nothing_to_revert:
            ui.success(f"nothing to revert: {args.target} has no centernet-patch manifest")
            return 0
        ui.success(f"reverted: {len(report.restored_files)} files restored, "
                   f"{len(report.removed_files)} removed")
        return 0

    if args.diff or args.check:
        tree = _existing_tree(args.target)
    else:
        from patcher.clone import locate_or_clone

        options = {key: value for key, value in
                   (("upstream", args.upstream), ("ref", args.ref)) if value is not None}
        located = locate_or_clone(args.target, sink=ui.sink, **options)
        tree = Path(getattr(located, "path", located))

    if args.diff or args.check:
        plan = core.plan(tree, patch_torch=args.patch_torch, sink=ui.sink)
        for note in plan.notes:
            ui.info(note)
        for warning in plan.warnings:
            ui.warn(warning)
        if args.diff:
            ui.console.out(plan.diff(), highlight=False, end="")
            return 0
        if plan.is_empty:
            ui.success(f"{tree} is fully patched")
            return 0
        ui.print(f"{len(plan.changes)} files need changes:")
        for change in plan.changes:
            ui.print(f"  {change.kind:8} {change.path}  ({', '.join(change.by)})")
        return 1

    report = core.apply(tree, force=args.force, patch_torch=args.patch_torch, sink=ui.sink)
    for note in report.notes:
        ui.info(note)
    if report.already_applied:
        ui.success(f"already applied: {tree} needs no change")
        return 0
    ui.table(f"Patched {tree}", ["file", "change", "by"],
             [[change.path, change.kind, ", ".join(change.by)] for change in report.changes])
    ui.success(f"{len(report.changed_files)} files written; manifest: {report.manifest}")
    return 0
