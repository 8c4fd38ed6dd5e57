"""Progress reporting for the silent core.

Core functions take a ``sink`` argument (default :data:`NULL_SINK`) and report through
it; only the CLI attaches a sink that draws anything.
"""
from __future__ import annotations

import contextlib
from typing import Iterator, List, Optional, Protocol, Tuple


class ProgressSink(Protocol):
    def step(self, title: str) -> "contextlib.AbstractContextManager[None]":
        """A long step; the CLI shows a spinner with ``title`` while it runs."""

    def info(self, message: str) -> None: ...

    def warn(self, message: str) -> None: ...


class NullSink:
    """Reports nothing: the default for every core function."""

    @contextlib.contextmanager
    def step(self, title: str) -> Iterator[None]:
        yield

    def info(self, message: str) -> None:
        pass

    def warn(self, message: str) -> None:
        pass


class RecordingSink(NullSink):
    """Keeps every report; used by tests and by callers that print later."""

    def __init__(self) -> None:
        self.events: List[Tuple[str, str]] = []

    @contextlib.contextmanager
    def step(self, title: str) -> Iterator[None]:
        self.events.append(("step", title))
        yield

    def info(self, message: str) -> None:
        self.events.append(("info", message))

    def warn(self, message: str) -> None:
        self.events.append(("warn", message))

    def messages(self, kind: Optional[str] = None) -> List[str]:
        return [m for k, m in self.events if kind is None or k == kind]


NULL_SINK = NullSink()
