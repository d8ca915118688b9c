"""Run a command and measure its memory: peak RSS of its largest process and peak PSS of its whole tree.

RSS alone double-counts pages that forked DataLoader workers share with their parent; PSS
(proportional set size, /proc/<pid>/smaps_rollup) splits shared pages between the processes
that map them, so the sum over the tree is the memory the command really holds. The tree is
polled every ``interval_s``; the largest single process's peak comes exactly from ``wait4``.
"""

from __future__ import annotations

import os
import subprocess
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any


def _children(pid: int) -> list[int]:
    """Every descendant of ``pid`` (scans /proc: robust where task/*/children is missing)."""
    parent_of: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat", encoding="ascii", errors="replace") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
                parent_of[int(entry)] = int(fields[1])
            except (OSError, IndexError, ValueError):
                continue
    found, frontier = [], [pid]
    while frontier:
        current = frontier.pop()
        kids = [p for p, parent in parent_of.items() if parent == current]
        found += kids
        frontier += kids
    return found


def _kib(pid: int, key: str) -> int:
    try:
        with open(f"/proc/{pid}/smaps_rollup", encoding="ascii") as f:
            for line in f:
                if line.startswith(key):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


class TreeSampler(threading.Thread):
    """Polls the tree of ``pid`` for the peak sum of PSS and the peak number of processes."""

    def __init__(self, pid: int, interval_s: float = 0.25) -> None:
        super().__init__(daemon=True)
        self.pid, self.interval_s = pid, interval_s
        self.peak_pss_kib = self.peak_processes = 0
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            tree = [self.pid, *_children(self.pid)]
            self.peak_pss_kib = max(self.peak_pss_kib, sum(_kib(p, "Pss:") for p in tree))
            self.peak_processes = max(self.peak_processes, len(tree))
            self.done.wait(self.interval_s)


def run_measured(argv: Sequence[str], log: Path, env: dict[str, str], cwd: Path) -> dict[str, Any]:
    """Run ``argv`` (stdout/stderr to ``log``); wall time, launch time and memory peaks. Raises on failure."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "w", encoding="utf-8") as out:
        out.write(f"$ {' '.join(map(str, argv))}\n")
        out.flush()
        launched = time.time()
        start = time.perf_counter()
        proc = subprocess.Popen([str(a) for a in argv], stdout=out, stderr=subprocess.STDOUT, env=env, cwd=cwd)
        sampler = TreeSampler(proc.pid)
        sampler.start()
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        sampler.done.set()
        sampler.join()
        proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        tail = "\n".join(log.read_text(encoding="utf-8", errors="replace").splitlines()[-15:])
        raise RuntimeError(f"{' '.join(map(str, argv))} exited with {proc.returncode}:\n{tail}")
    return {"launched": launched, "wall_s": round(wall, 2), "max_rss_mb": round(usage.ru_maxrss / 1024, 1),
            "tree_pss_mb": round(sampler.peak_pss_kib / 1024, 1), "processes": sampler.peak_processes}
