"""A transfer progress bar on stderr (bytes, rate, time left), silent when not a terminal.

One line at any width: the label (``push NAME``) is cut with an ellipsis to leave room
for the bar, the bytes, the rate and the time left, all in binary units (MiB and MiB/s,
never MiB beside MB/s). Notes (a retry, a resumed transfer) print above the bar.
"""

from __future__ import annotations

import sys
from types import TracebackType

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    ProgressColumn,
    Task,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
)
from rich.table import Column
from rich.text import Text

from gateway.client import humane
from gateway.tui import PREFIX, shown

FIXED = 17 + 12 + 7 + 10 + 4  # bytes, rate, time left, the shortest bar, the gaps
MIN_LABEL = 8


class BinarySpeed(ProgressColumn):
    """The transfer rate in the units of the byte counts: ``341.3 MiB/s``."""

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text(
            "-" if speed is None else f"{humane.size(int(speed))}/s", style="progress.data.speed"
        )


class Meter:
    """Counts bytes moved; thread-safe (several part uploads advance it at once)."""

    def __init__(
        self,
        label: str,
        total: int,
        *,
        enabled: bool | None = None,
        console: Console | None = None,
    ) -> None:
        if enabled is None:
            enabled = sys.stderr.isatty()
        self._progress: Progress | None = None
        self._task: TaskID | None = None
        if enabled:
            console = console or Console(stderr=True)
            room = max(MIN_LABEL, console.width - FIXED)
            self._progress = Progress(
                TextColumn(
                    "{task.description}",
                    markup=False,
                    table_column=Column(no_wrap=True, overflow="ellipsis", max_width=room),
                ),
                BarColumn(bar_width=None),
                DownloadColumn(binary_units=True),
                BinarySpeed(),
                TimeRemainingColumn(),
                console=console,
                transient=False,
                expand=True,
            )
            self._task = self._progress.add_task(shown(label), total=total)

    def advance(self, n: int) -> None:
        if self._progress is not None and self._task is not None:
            self._progress.advance(self._task, n)

    def note(self, message: str) -> None:
        """``gateway: MESSAGE`` on stderr, above the bar when there is one."""
        if self._progress is None:
            sys.stderr.write(f"{PREFIX}: {shown(message)}\n")
            return
        self._progress.console.print(Text(f"{PREFIX}: {shown(message)}"), soft_wrap=True)

    def __enter__(self) -> Meter:
        if self._progress is not None:
            self._progress.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._progress is not None:
            self._progress.stop()
