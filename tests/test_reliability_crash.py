"""Crashes while checkpoints are written: SIGKILL at random moments, and a full disk.

``imgclf train --save-every 1`` runs in a real subprocess and is killed again and
again (after random delays, or the instant a temp file appears); after every kill
``last.safetensors`` and ``last.state.pt`` must load and agree (same step, or the
weights one save behind, since the state is written first), and ``--resume`` must
restart from the saved step and finish the run with no temp file left.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import make_split_tree
from reliability_helpers import child_env, record_figures, wait_for

from imgclf.artifacts import RunDir
from imgclf.engine.checkpoint import load_state, load_weights

TRAIN = ["--model", "small_cnn", "--batch-size", "4", "--lr", "0.01", "--img-size", "32", "--save-every", "1", "--precision", "fp32",
         "--device", "cpu", "--seed", "0"]
STEPS_PER_EPOCH = 6   # 24 train images / 4


def start(args: list[str], log: Path) -> subprocess.Popen[bytes]:
    with open(log, "wb") as f:
        return subprocess.Popen([sys.executable, "-m", "imgclf", "train", *args], stdout=subprocess.DEVNULL,
                                stderr=f, env=child_env(), start_new_session=True)


def temp_files(run: Path) -> list[Path]:
    """Checkpoint temp files (what resume must never pick up, and cleans away)."""
    return sorted(RunDir(run).checkpoints_dir.glob(".imgclf-tmp-*"))


def check_checkpoints(run: Path) -> int:
    """Both files load; weights are at the state's step or one save behind. Returns the state's step."""
    rd = RunDir(run)
    state_step = int(load_state(rd.resume_state)["step"])
    if not rd.weights("last").exists():   # killed between the very first state and weights writes
        assert state_step == 1
        return state_step
    _, meta = load_weights(rd.weights("last"))
    assert int(meta["step"]) in (state_step, state_step - 1), (meta["step"], state_step)
    return state_step


def kill_loop(tmp_path: Path, kills: int, seed: int, epochs: int) -> dict[str, int]:
    data = make_split_tree(tmp_path / "data", train_per_class=8, val_per_class=2, classes=("circle", "square",
                                                                                            "cross"))
    run = tmp_path / "run"
    rng = random.Random(seed)
    done_kills = temp_left = finished_early = 0
    args = [str(data), "--out", str(run), *TRAIN, "--epochs", str(epochs)]
    saved_step = None
    for k in range(kills):
        log = tmp_path / f"log{k}.txt"
        stale = set(temp_files(run))
        proc = start(args, log)
        try:
            started = ((lambda: "resuming" in log.read_text()) if saved_step is not None
                       else (lambda: RunDir(run).resume_state.exists()))
            assert wait_for(lambda: started() or proc.poll() is not None, 180, 0.02)
            if rng.random() < 0.5:   # the instant a new checkpoint temp file exists: mid-write
                wait_for(lambda: bool(set(temp_files(run)) - stale) or proc.poll() is not None, 30, 0.0005)
            else:
                time.sleep(rng.uniform(0, 1.5))
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                done_kills += 1
            else:
                finished_early += 1
            proc.wait()
        if saved_step is not None:   # this process resumed from the step we saw saved
            assert f"at step {saved_step}" in log.read_text(), log.read_text()[-1500:]
        temp_left += len(temp_files(run))
        saved_step = check_checkpoints(run)
        args = ["--resume", str(run)]
    log = tmp_path / "final.txt"
    proc = start(args, log)
    assert proc.wait(timeout=600) == 0, log.read_text()[-2000:]
    if saved_step is not None:
        assert f"at step {saved_step}" in log.read_text() or saved_step == epochs * STEPS_PER_EPOCH
    assert check_checkpoints(run) == epochs * STEPS_PER_EPOCH
    assert temp_files(run) == [], "temp files survived the resume"
    return {"kills": done_kills, "finished_before_kill": finished_early, "temp_files_left_by_kills": temp_left,
            "temp_files_after_resume": 0, "unloadable_checkpoints": 0}


def test_sigkill_during_saves_quick(tmp_path: Path) -> None:
    figures = kill_loop(tmp_path, kills=5, seed=1, epochs=8)
    record_figures("sigkill_quick", **figures)
    assert figures["kills"] >= 3


@pytest.mark.slow
def test_sigkill_during_saves_long(tmp_path: Path) -> None:
    figures = kill_loop(tmp_path, kills=25, seed=2, epochs=40)
    record_figures("sigkill_long", **figures)
    assert figures["kills"] >= 20


@pytest.fixture
def tiny_tmpfs(tmp_path: Path):
    """A 40 MiB tmpfs (we are root in CI); skipped where mounting is not allowed."""
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=40m", "tmpfs", str(mnt)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({done.stderr.decode().strip()}); ENOSPC not simulated")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_disk_full_keeps_the_previous_checkpoint(split_data: Path, tiny_tmpfs: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    from imgclf.cli import main

    run = tiny_tmpfs / "run"
    assert main(["train", str(split_data), "--out", str(run), "--model", "small_cnn", "--epochs", "1",
                 "--batch-size", "16", "--img-size", "32", "--precision", "fp32", "--device", "cpu"]) == 0
    rd = RunDir(run)
    before = {p: p.read_bytes() for p in (rd.resume_state, rd.weights("last"), rd.weights("best"))}
    stat = os.statvfs(tiny_tmpfs)
    free = stat.f_bavail * stat.f_frsize
    (tiny_tmpfs / "filler").write_bytes(b"\0" * max(0, free - 3 * 1024 * 1024))   # 3 MiB left < one checkpoint
    capsys.readouterr()
    code = main(["train", "--resume", str(run), "--epochs", "2"])
    err = capsys.readouterr().err
    assert code == 1, err[-2000:]
    line = [ln for ln in err.splitlines() if ln.startswith("imgclf train: error:")]
    assert len(line) == 1 and "No space left on device" in line[0] and str(run) in line[0], err[-2000:]
    assert "Traceback" not in err
    for path, data in before.items():
        assert path.read_bytes() == data, f"{path.name} changed"
    assert temp_files(run) == []
    assert int(load_state(rd.resume_state)["step"]) == 3
    (tiny_tmpfs / "filler").unlink()
    assert main(["train", "--resume", str(run), "--epochs", "2"]) == 0   # space back: the run goes on
    assert int(load_state(rd.resume_state)["step"]) == 6
    record_figures("disk_full", checkpoints_intact=len(before), temp_files_left=0, clear_error=1)


def test_resume_cleans_temp_files_in_the_whole_run_folder(trained_run: Path, tmp_path: Path) -> None:
    import shutil

    from imgclf.cli import main

    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    (run / ".imgclf-tmp-k1ll3d.csv").write_text("step,epoch\n3,")   # what a kill mid-write of metrics.csv leaves
    assert main(["train", "--resume", str(run), "--epochs", "3"]) == 0
    assert sorted(run.rglob(".imgclf-tmp-*")) == []
