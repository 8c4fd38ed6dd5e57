"""The thin CLI: parsing, lazy subcommands, exceptions -> exit codes, the UI layer."""
from __future__ import annotations

import argparse
import io
import sys
import types

import pytest
from rich.console import Console

from patcher import __version__, cli
from patcher.commands import COMMANDS
from patcher.errors import (EXIT_INTERNAL, EXIT_MISSING_DEPENDENCY, EXIT_USAGE,
                            MissingDependencyError, TargetError)
from patcher.ui import UI


def subparser(name: str) -> argparse.ArgumentParser:
    parser = cli.build_parser([name])
    (choices,) = [a.choices for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return choices[name]


@pytest.fixture
def fake_command(monkeypatch):
    """Registers patcher.commands.fake, whose execute() runs the function given."""

    def install(behaviour, configure=lambda parser: None):
        module = types.ModuleType("patcher.commands.fake")
        module.HELP = "a command that only tests know"
        module.configure = configure
        module.execute = lambda args, ui: behaviour(args, ui)
        monkeypatch.setitem(sys.modules, "patcher.commands.fake", module)
        monkeypatch.setitem(COMMANDS, "fake", "fake")

    return install


def test_version(capsys):
    assert cli.main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"centernet-patch {__version__}"


def test_top_level_help_lists_every_subcommand(capsys):
    assert cli.main(["--help"]) == 0
    out = capsys.readouterr().out
    for name in COMMANDS:
        assert f"    {name}" in out
    for option in ("--quiet", "--debug", "--version"):
        assert option in out


@pytest.mark.parametrize("name", list(COMMANDS))
def test_each_subcommand_help_describes_its_options(name, capsys):
    assert cli.main([name, "--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: centernet-patch {name}")
    loaded = cli._load_command(name)
    if isinstance(loaded, cli._Unavailable):
        pytest.skip(f"{name} is not delivered yet: {loaded.reason}")
    assert loaded.HELP.strip()
    for action in subparser(name)._actions:
        if isinstance(action, argparse._HelpAction):
            continue
        assert action.help and action.help != argparse.SUPPRESS, (
            f"{name}: option {action.option_strings or action.dest} has no help text")
        shown = action.option_strings[-1] if action.option_strings else (
            action.metavar or action.dest)
        assert str(shown) in out


def test_missing_subcommand_is_a_usage_error(capsys):
    assert cli.main([]) == EXIT_USAGE
    assert "COMMAND" in capsys.readouterr().err


def test_unknown_subcommand_is_a_usage_error(capsys):
    assert cli.main(["frobnicate"]) == EXIT_USAGE
    assert "invalid choice: 'frobnicate'" in capsys.readouterr().err


def test_undelivered_subcommand_says_so(monkeypatch, capsys):
    monkeypatch.setitem(COMMANDS, "future", "module_nobody_wrote")
    assert cli.main(["future", "--any", "thing"]) == EXIT_MISSING_DEPENDENCY
    err = capsys.readouterr().err
    assert "ERROR: `centernet-patch future` is not delivered yet" in err
    assert cli.main(["--help"]) == 0
    assert "(not delivered yet)" in capsys.readouterr().out


def test_only_the_selected_subcommand_is_imported(monkeypatch, fake_command):
    fake_command(lambda args, ui: 0)
    imported = []
    real = cli._load_command
    monkeypatch.setattr(cli, "_load_command", lambda name: imported.append(name) or real(name))
    assert cli.main(["-q", "fake"]) == 0
    assert imported == ["fake"]


def test_options_reach_execute_and_its_code_is_returned(fake_command):
    def configure(parser):
        parser.add_argument("--count", type=int, default=1, help="how many")

    fake_command(lambda args, ui: args.count, configure)
    assert cli.main(["fake", "--count", "5"]) == 5


def test_project_error_prints_error_and_tip(fake_command, capsys):
    def fail(args, ui):
        raise TargetError("/x is not a CenterNet tree [really]", tip="pass the checkout root")

    fake_command(fail)
    assert cli.main(["fake"]) == TargetError.exit_code == EXIT_USAGE
    err = capsys.readouterr().err
    assert "ERROR: /x is not a CenterNet tree [really]" in err  # markup-like text kept
    assert "TIP: pass the checkout root" in err
    assert "Traceback" not in err


def test_missing_dependency_exit_code(fake_command, capsys):
    def fail(args, ui):
        raise MissingDependencyError("TensorRT is not installed")

    fake_command(fail)
    assert cli.main(["fake"]) == EXIT_MISSING_DEPENDENCY
    assert "ERROR: TensorRT is not installed" in capsys.readouterr().err


def test_keyboard_interrupt_is_130(fake_command, capsys):
    def interrupt(args, ui):
        raise KeyboardInterrupt

    fake_command(interrupt)
    assert cli.main(["fake"]) == 130
    assert "ERROR: interrupted" in capsys.readouterr().err


def test_unexpected_exception_is_internal_with_traceback_only_on_debug(fake_command, capsys):
    def crash(args, ui):
        raise RuntimeError("boom")

    fake_command(crash)
    assert cli.main(["fake"]) == EXIT_INTERNAL
    err = capsys.readouterr().err
    assert "ERROR: internal error: RuntimeError: boom" in err
    assert "--debug" in err and "Traceback" not in err
    assert cli.main(["--debug", "fake"]) == EXIT_INTERNAL
    assert "Traceback (most recent call last)" in capsys.readouterr().err


def test_module_entry_point_runs_the_cli():
    import subprocess

    done = subprocess.run([sys.executable, "-m", "patcher", "--version"], capture_output=True,
                          text=True, check=True)
    assert done.stdout.strip() == f"centernet-patch {__version__}"


# -- the UI layer --------------------------------------------------------------------------

def make_ui(quiet=False, terminal=False):
    out, err = io.StringIO(), io.StringIO()
    ui = UI(quiet=quiet, console=Console(file=out, width=120),
            err_console=Console(file=err, width=120, force_terminal=terminal))
    return ui, out, err


def test_sink_reports_steps_done_and_failed():
    ui, out, err = make_ui()
    with ui.sink.step("Building dcn_ext"):
        ui.sink.info("compiling 3 files")
    with pytest.raises(ValueError):
        with ui.sink.step("Exporting ddd"):
            raise ValueError("bad")
    ui.sink.warn("checkout is dirty")
    text = err.getvalue()
    assert "✓ Building dcn_ext" in text and "compiling 3 files" in text
    assert "✗ Exporting ddd" in text
    assert "WARNING: checkout is dirty" in text
    assert out.getvalue() == ""  # progress never goes to stdout


def test_nested_steps_share_one_spinner_on_a_terminal():
    ui, _, err = make_ui(terminal=True)
    with ui.sink.step("outer"):
        with ui.sink.step("inner"):  # a second rich live display would raise LiveError
            pass
    assert "inner" in err.getvalue() and "outer" in err.getvalue()


def test_quiet_hides_progress_but_not_warnings_or_results():
    ui, out, err = make_ui(quiet=True)
    with ui.sink.step("Cloning"):
        ui.sink.info("detail")
    ui.sink.warn("careful")
    ui.success("done")
    assert "Cloning" not in err.getvalue() and "detail" not in err.getvalue()
    assert "careful" in err.getvalue()
    assert "done" in out.getvalue()


def test_table_shows_cells_literally_and_checks_row_width():
    ui, out, _ = make_ui()
    ui.table("Heads", ["head", "max abs"], [["hm", 1.5e-6], ["[bold]x[/bold]", None]])
    text = out.getvalue()
    assert "Heads" in text and "hm" in text and "1.5e-06" in text
    assert "[bold]x[/bold]" in text
    with pytest.raises(ValueError, match="row has 1 cells, expected 2"):
        ui.table("Heads", ["head", "max abs"], [["hm"]])
