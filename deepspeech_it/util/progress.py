"""Progress bars that show only where a person is watching."""

from __future__ import annotations

import sys
from typing import Iterable, Iterator, TypeVar

import progressbar

T = TypeVar("T")


def bars_wanted(enabled: bool) -> bool:
    return enabled and sys.stderr.isatty()


def progress_bar(total: int | None, label: str, enabled: bool) -> progressbar.ProgressBar:
    """A started bar on stderr; a silent one when ENABLED is false or stderr is not a terminal."""
    widgets = [f"{label} ", progressbar.Percentage(), " ", progressbar.Bar(), " ", progressbar.SimpleProgress(),
               " ", progressbar.ETA()] if total else [f"{label} ", progressbar.Counter(), " ", progressbar.Timer()]
    if not bars_wanted(enabled):
        return progressbar.NullBar(max_value=total or progressbar.UnknownLength)
    return progressbar.ProgressBar(max_value=total or progressbar.UnknownLength, widgets=widgets, fd=sys.stderr)


def progress_iter(iterable: Iterable[T], total: int | None, label: str, enabled: bool) -> Iterator[T]:
    bar = progress_bar(total, label, enabled)
    bar.start()
    try:
        for done, item in enumerate(iterable, 1):
            yield item
            bar.update(done)
    finally:
        bar.finish(dirty=True)
