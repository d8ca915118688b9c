"""prepare killed half-way continues where it stopped and ends byte-identical to an uninterrupted run."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import tree_digest
from PIL import Image
from reliability_helpers import child_env, wait_for

from imgclf import prepare
from imgclf.data.journal import JOURNAL, STAGING, partial_folder


def noisy_source(root: Path, per_class: int = 150, size: int = 96) -> Path:
    """Two classes of random-noise PNGs: slow enough to decode that a kill lands half-way."""
    rng = np.random.default_rng(0)
    for cls in ("a", "b"):
        (root / cls).mkdir(parents=True)
        for i in range(per_class):
            Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(root / cls / f"{cls}{i:03d}.png")
    return root


def journal_lines(dst: Path) -> int:
    try:
        return len((partial_folder(dst) / JOURNAL).read_text(encoding="utf-8").splitlines()) - 1
    except OSError:
        return 0


def test_killed_prepare_continues_and_matches_an_uninterrupted_run(tmp_path: Path) -> None:
    src = noisy_source(tmp_path / "raw")
    before = tree_digest(src)
    dst = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-m", "imgclf", "prepare", str(src), str(dst), "--workers", "1"],
                            env=child_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    assert wait_for(lambda: journal_lines(dst) >= 60, timeout=120)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    done = journal_lines(dst)
    assert 60 <= done < 300 and not dst.exists()
    # A staged file damaged after the kill is not trusted: it is decoded again.
    staged = sorted((partial_folder(dst) / STAGING).iterdir())
    staged[0].write_bytes(b"damaged")

    run = subprocess.run([sys.executable, "-m", "imgclf", "prepare", str(src), str(dst)], env=child_env(),
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    reused = int(run.stderr.split("continuing an interrupted prepare: ")[1].split(" of")[0])
    assert done - 2 <= reused < done   # every journaled file but the damaged one (and a line cut by the kill)
    prepare(src, tmp_path / "uninterrupted", workers=1)
    assert tree_digest(dst) == tree_digest(tmp_path / "uninterrupted")
    assert not partial_folder(dst).exists() and tree_digest(src) == before


def test_changed_settings_start_over(tmp_path: Path) -> None:
    src = noisy_source(tmp_path / "raw", per_class=5, size=16)
    dst = tmp_path / "out"
    folder = partial_folder(dst)
    folder.mkdir()
    (folder / JOURNAL).write_text(json.dumps({"journal": 1, "settings": {"format": "jpg"}}) + "\n")
    (folder / "train").mkdir()   # a half-built output tree of another run
    prepare(src, dst)
    assert not folder.exists() and {p.name for p in dst.iterdir()} == {"train", "val", "manifest.csv",
                                                                       "prepare_report.json"}


def test_progress_without_a_terminal_prints_rate_and_time_left(capsys: pytest.CaptureFixture[str]) -> None:
    from imgclf.console import progress

    assert list(progress(range(4), total=10, desc="decoding", unit="img", initial=2, every_s=0)) == [0, 1, 2, 3]
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 4 and lines[-1].startswith("decoding: 6/10 img (") and "s left" in lines[-1]
