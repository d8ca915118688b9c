"""One writer per run folder and per prepare DST: real processes, and a holder killed with SIGKILL."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from imgclf.artifacts import RunDir
from imgclf.cli import main
from imgclf.data.prepare import lock_path
from reliability_helpers import child_env, wait_for


def _holds_lock(lock: Path, pid: int) -> bool:
    try:
        return lock.read_text().strip() == str(pid)
    except OSError:
        return False


def _kill(process: subprocess.Popen) -> None:
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)


def test_a_run_being_trained_has_one_writer(trained_run: Path, split_data: Path, tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    lock = RunDir(run).lock
    holder = subprocess.Popen([sys.executable, "-m", "imgclf", "train", "--resume", str(run), "--epochs", "500"],
                              env=child_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        assert wait_for(lambda: _holds_lock(lock, holder.pid), timeout=120), "the training process never locked"
        assert main(["train", "--resume", str(run), "--epochs", "3"]) == 1
        assert f"{run} is being written by process {holder.pid}" in capsys.readouterr().err
        assert main(["train", str(split_data), "--out", str(run), "--force", "--model", "small_cnn",
                     "--img-size", "32", "--epochs", "1"]) == 1
        assert f"{run} is being written by process {holder.pid}" in capsys.readouterr().err
        assert holder.poll() is None, "the first writer must not be disturbed"
    finally:
        _kill(holder)
    assert _holds_lock(lock, holder.pid)               # a killed writer leaves its PID behind
    assert main(["train", "--resume", str(run), "--epochs", "2"]) == 0   # nothing left to train: quick
    assert f"taking over the lock left by process {holder.pid}" in capsys.readouterr().err
    assert lock.read_text() == ""                        # released cleanly


def test_prepare_destination_has_one_writer(class_folders: Path, tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    dst = tmp_path / "data"
    code = ("import sys, time\nfrom pathlib import Path\nfrom imgclf.io import single_writer\n"
            "with single_writer(Path(sys.argv[1]), 'DST'):\n    print('locked', flush=True)\n    time.sleep(600)\n")
    holder = subprocess.Popen([sys.executable, "-c", code, str(lock_path(dst))], env=child_env(),
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        assert main(["prepare", str(class_folders), str(dst)]) == 1
        assert f"DST {dst} is being written by process {holder.pid}" in capsys.readouterr().err
        assert not dst.exists()
    finally:
        _kill(holder)
    assert main(["prepare", str(class_folders), str(dst)]) == 0
    assert f"taking over the lock left by process {holder.pid}" in capsys.readouterr().err
    assert (dst / "prepare_report.json").is_file() and os.path.getsize(lock_path(dst)) == 0
