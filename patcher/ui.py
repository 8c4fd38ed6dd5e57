"""The CLI's drawing layer: everything the user sees goes through one :class:`UI`.

The core never prints; it reports through a :class:`~patcher.progress.ProgressSink`. The
CLI hands the core ``ui.sink``, which draws a spinner per step on a terminal and plain
lines elsewhere (CI logs), and draws results with :meth:`UI.table`.

Results (tables, success lines) go to stdout; progress, warnings and errors go to stderr,
so ``centernet-patch doctor > report.txt`` keeps only the report.
"""
from __future__ import annotations

import contextlib
import os
import time
from typing import Iterator, List, Optional, Sequence

from rich.console import Console
from rich.markup import escape
from rich.status import Status
from rich.table import Table


class ConsoleSink:
    """A ProgressSink that draws: one spinner for the outermost step, a line per step done.

    Rich allows one live display at a time, so a step opened inside another one updates
    the running spinner's text instead of starting a second spinner.
    """

    def __init__(self, ui: "UI") -> None:
        self._ui = ui
        self._status: Optional[Status] = None
        self._titles: List[str] = []

    @contextlib.contextmanager
    def step(self, title: str) -> Iterator[None]:
        ui = self._ui
        start = time.monotonic()
        self._titles.append(title)
        outermost = len(self._titles) == 1
        animated = ui.err_console.is_terminal and not ui.quiet
        try:
            if animated and outermost:
                self._status = ui.err_console.status(escape(title))
                self._status.start()
            elif animated and self._status is not None:
                self._status.update(escape(" › ".join(self._titles)))
            elif not ui.quiet:
                ui.err_console.print(f"… {escape(title)}", highlight=False)
            yield
        except BaseException:
            self._close(outermost)
            if not ui.quiet:
                ui.err_console.print(f"[red]✗[/red] {escape(title)}", highlight=False)
            raise
        else:
            self._close(outermost)
            if not ui.quiet:
                elapsed = time.monotonic() - start
                ui.err_console.print(
                    f"[green]✓[/green] {escape(title)} [dim]({elapsed:.1f} s)[/dim]",
                    highlight=False,
                )
        finally:
            self._titles.pop()
            if self._status is not None and self._titles:
                self._status.update(escape(" › ".join(self._titles)))

    def _close(self, outermost: bool) -> None:
        if outermost and self._status is not None:
            self._status.stop()
            self._status = None

    def info(self, message: str) -> None:
        self._ui.info(message)

    def warn(self, message: str) -> None:
        self._ui.warn(message)


class UI:
    """What the CLI draws with. ``quiet`` hides progress and info lines, never results,
    warnings or errors."""

    def __init__(self, *, quiet: bool = False, console: Optional[Console] = None,
                 err_console: Optional[Console] = None) -> None:
        self.quiet = quiet
        # Console(file=None) looks sys.stdout/sys.stderr up at each write, which keeps
        # output capturable by tests that swap them.
        self.console = console or Console(highlight=False, soft_wrap=False)
        if console is None and not self.console.is_terminal and "COLUMNS" not in os.environ:
            # logs and pipes: rich's default of 80 columns folds paths in tables
            self.console.width = 120
        # soft_wrap: messages are never broken mid-line (they are read and grepped in CI logs)
        self.err_console = err_console or Console(stderr=True, highlight=False, soft_wrap=True)
        self.sink = ConsoleSink(self)

    # -- results (stdout) -------------------------------------------------------------
    def table(self, title: Optional[str], columns: Sequence[str],
              rows: Sequence[Sequence[object]]) -> None:
        """Draw a table; cells are converted with ``str`` and shown literally."""
        table = Table(title=escape(title) if title else None, title_justify="left",
                      show_lines=False)
        for column in columns:
            table.add_column(escape(str(column)), overflow="fold")
        for row in rows:
            if len(row) != len(columns):
                raise ValueError(
                    f"table {title!r}: row has {len(row)} cells, expected {len(columns)}: {row!r}")
            table.add_row(*(escape("" if cell is None else str(cell)) for cell in row))
        self.console.print(table)

    def success(self, message: str) -> None:
        self.console.print(f"[green]{escape(message)}[/green]")

    def print(self, message: str = "") -> None:
        """A plain result line (stdout), shown literally."""
        self.console.print(escape(message))

    # -- progress and diagnostics (stderr) ----------------------------------------------
    def info(self, message: str) -> None:
        if not self.quiet:
            self.err_console.print(escape(message))

    def warn(self, message: str) -> None:
        self.err_console.print(f"[yellow]WARNING:[/yellow] {escape(message)}")

    def error(self, message: str, tip: Optional[str] = None) -> None:
        self.err_console.print(f"[bold red]ERROR:[/bold red] {escape(message)}")
        if tip:
            self.err_console.print(f"[cyan]TIP:[/cyan] {escape(tip)}")
