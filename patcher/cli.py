"""``centernet-patch``: the thin command line over the silent core.

This is the one place that turns :mod:`patcher.errors` exceptions into ``ERROR:``/``TIP:``
lines and exit codes. Subcommand modules (patcher/commands/<name>.py) are imported only
when needed: running one subcommand imports only its module, so a slow or broken module
never gets in the way of another.
"""
from __future__ import annotations

import argparse
import importlib
import sys
import traceback
from dataclasses import dataclass
from types import ModuleType
from typing import Dict, List, Optional, Sequence

from patcher import __version__
from patcher.commands import COMMANDS
from patcher.errors import EXIT_INTERNAL, EXIT_MISSING_DEPENDENCY, EXIT_USAGE, CenterNetPatchError

PROG = "centernet-patch"
EXIT_INTERRUPTED = 130  # the shell's convention for SIGINT

# options that take no value and may come before the subcommand
_GLOBAL_FLAGS = {"-q", "--quiet", "--debug", "--version", "-h", "--help"}


@dataclass
class _Unavailable:
    """A subcommand whose module cannot be imported yet."""

    name: str
    module: str
    reason: str
    delivered: bool  # False: the module (or a patcher module it needs) does not exist yet

    @property
    def help(self) -> str:
        return "(not delivered yet)" if not self.delivered else f"(unavailable: {self.reason})"


def _load_command(name: str):
    """Import ``patcher.commands.<module>``; an :class:`_Unavailable` if it cannot be."""
    module_name = f"patcher.commands.{COMMANDS[name]}"
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        missing = error.name or ""
        ours = missing == "patcher" or missing.startswith(("patcher.", "dcn_ext"))
        return _Unavailable(name, module_name, f"{error}", delivered=not ours)
    except ImportError as error:
        return _Unavailable(name, module_name, f"{error}", delivered=True)


def _selected_command(argv: Sequence[str]) -> Optional[str]:
    """The subcommand named on the command line, if any (skipping global flags)."""
    for token in argv:
        if token in _GLOBAL_FLAGS:
            continue
        return token if token in COMMANDS else None
    return None


def build_parser(argv: Sequence[str] = ()) -> argparse.ArgumentParser:
    """The full parser. Only the subcommand named in ``argv`` is imported, or all of them
    when none is named (``--help`` lists each one's one-line help)."""
    parser = argparse.ArgumentParser(
        prog=PROG,
        description=(
            "Make CenterNet's DCN models (DLA-34, ResNet-DCN) work on today's stack: patch an "
            "official checkout with codemods, build the DCN extension and the TensorRT "
            "plugin, export ctdet/ddd/multi_pose to ONNX, verify against PyTorch, benchmark."),
        epilog=(
            "Start with `centernet-patch doctor` (what this machine can do) and "
            "`centernet-patch demo` (the whole pipeline on a built-in miniature, offline). "
            "Run `centernet-patch COMMAND --help` for a command's options."),
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("-q", "--quiet", action="store_true",
                        help="hide progress and informational lines (results, warnings and "
                             "errors are still shown)")
    parser.add_argument("--debug", action="store_true",
                        help="show the full traceback when something fails")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    subparsers.required = True

    selected = _selected_command(argv)
    for name in COMMANDS:
        if selected is not None and name != selected:
            # not needed for this run: listed without importing its module
            subparsers.add_parser(name)
            continue
        loaded = _load_command(name)
        if isinstance(loaded, _Unavailable):
            sub = subparsers.add_parser(name, help=loaded.help, description=loaded.help)
            # any option is accepted (see main) so that the user sees the plain message
            sub.set_defaults(_unavailable=loaded)
        else:
            help_line = getattr(loaded, "HELP", None)
            sub = subparsers.add_parser(
                name, help=help_line, description=getattr(loaded, "DESCRIPTION", help_line),
                formatter_class=argparse.RawDescriptionHelpFormatter)
            loaded.configure(sub)
            sub.set_defaults(_module=loaded)
    return parser


def _run(args: argparse.Namespace, ui) -> int:
    unavailable: Optional[_Unavailable] = getattr(args, "_unavailable", None)
    if unavailable is not None:
        if unavailable.delivered:
            ui.error(f"`{PROG} {unavailable.name}` cannot start: {unavailable.reason}",
                     tip=f"run `{PROG} doctor` to see what this machine is missing")
        else:
            ui.error(f"`{PROG} {unavailable.name}` is not delivered yet ({unavailable.reason})")
        return EXIT_MISSING_DEPENDENCY
    module: ModuleType = args._module
    code = module.execute(args, ui)
    return int(code or 0)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of the console script; returns the exit code (callable from tests)."""
    from patcher.ui import UI

    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(argv)
    try:
        args, unknown = parser.parse_known_args(argv)
        if unknown and not hasattr(args, "_unavailable"):
            parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    except SystemExit as exit_:  # --help, --version, usage errors
        return exit_.code if isinstance(exit_.code, int) else EXIT_USAGE

    ui = UI(quiet=args.quiet)
    try:
        return _run(args, ui)
    except CenterNetPatchError as error:
        if args.debug:
            ui.err_console.print(traceback.format_exc(), markup=False, highlight=False)
        ui.error(str(error), tip=error.tip)
        return error.exit_code
    except KeyboardInterrupt:
        ui.error("interrupted")
        return EXIT_INTERRUPTED
    except Exception as error:  # a bug in this tool: short message, traceback on --debug
        if args.debug:
            ui.err_console.print(traceback.format_exc(), markup=False, highlight=False)
            tip = "please report this traceback"
        else:
            tip = f"rerun with `{PROG} --debug ...` to see the traceback, and report it"
        ui.error(f"internal error: {type(error).__name__}: {error}", tip=tip)
        return EXIT_INTERNAL


def entry_point() -> None:  # pragma: no cover - used by `python -m patcher`
    sys.exit(main())


if __name__ == "__main__":  # pragma: no cover
    entry_point()
