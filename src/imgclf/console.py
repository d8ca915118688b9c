"""Status lines to stderr, tables to stdout; progress bars on a terminal, periodic status lines otherwise."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, TypeVar

T = TypeVar("T")


def status(message: str) -> None:
    """A line of status for the person watching; never part of the results."""
    print(message, file=sys.stderr, flush=True)


def warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr, flush=True)


_PROGRESS = {"enabled": True}


def show_progress(enabled: bool) -> None:
    """Turn progress reports off in this process (e.g. in workers running side by side)."""
    _PROGRESS["enabled"] = enabled


def progress(items: Iterable[T], total: int | None = None, desc: str = "", unit: str = "it", initial: int = 0,
             every_s: float = 30.0) -> Iterator[T]:
    """A tqdm bar (rate, ETA) on stderr when it is a terminal; otherwise, for long work, a status line
    with the rate and ETA every ``every_s`` seconds (``initial``: items already done before)."""
    if not _PROGRESS["enabled"]:
        yield from items
        return
    if sys.stderr.isatty():
        from tqdm import tqdm

        yield from tqdm(items, total=total, initial=initial, desc=desc, unit=unit, leave=False, dynamic_ncols=True)
        return
    start = last = time.monotonic()
    done = initial
    for item in items:
        yield item
        done += 1
        now = time.monotonic()
        if now - last >= every_s:
            last = now
            rate = (done - initial) / (now - start)
            eta = f", about {(total - done) / rate:.0f} s left" if total and rate > 0 else ""
            status(f"{desc}: {done}/{total or '?'} {unit} ({rate:.1f} {unit}/s{eta})")


def format_cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4f}" if abs(value) < 1000 else f"{value:.1f}"
    return str(value)


def format_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A plain aligned text table: numbers right-aligned, text left-aligned."""
    cells = [[format_cell(v) for v in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in cells:
        widths = [max(w, len(c)) for w, c in zip(widths, row)]
    numeric = [all(isinstance(r[i], (int, float)) for r in rows) if rows else False
               for i in range(len(headers))]

    def line(values: Sequence[str]) -> str:
        parts = [v.rjust(w) if num else v.ljust(w) for v, w, num in zip(values, widths, numeric)]
        return "  ".join(parts).rstrip()

    out = [line(list(headers)), line(["-" * w for w in widths])]
    out += [line(row) for row in cells]
    return "\n".join(out)


def print_table(headers: Sequence[str], rows: Sequence[Sequence[Any]], file: Any = None) -> None:
    print(format_table(headers, rows), file=file or sys.stdout, flush=True)
