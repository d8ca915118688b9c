"""On a CUDA machine only (skipped elsewhere): training, evaluation and DDP over NCCL on the GPU.

Run by ``benchmarks/gpu_check.sh``; the default suite skips them on a CPU-only machine.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

import imgclf
from imgclf.artifacts import RunDir

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def test_train_and_evaluate_on_the_gpu(split_data: Path, tmp_path: Path) -> None:
    result = imgclf.train(split_data, out=tmp_path / "run", epochs=3, img_size=32, device="cuda", seed=0)
    config = RunDir(result.run_dir).config_json.read_text()
    assert '"cuda' in config
    evaluation = imgclf.evaluate(result.run_dir, device="cuda")
    assert evaluation.accuracy == pytest.approx(result.final["val_acc"], abs=1e-6)


def test_ddp_over_nccl(split_data: Path, tmp_path: Path) -> None:
    """One process per GPU through torchrun (NCCL). With two GPUs or more this is DDP with gradients
    all-reduced over NCCL; with one, a world of one: the NCCL process group starts and the run completes."""
    nproc = min(2, torch.cuda.device_count())
    out = tmp_path / "ddp"
    argv = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}", "-m", "imgclf",
            "train", str(split_data), "--out", str(out), "--epochs", "2", "--img-size", "32", "--device", "cuda",
            "--batch-size", "8", "--seed", "0"]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = (out / "metrics.csv").read_text().splitlines()
    assert len(rows) == 3     # header + one row per epoch, written once (by rank 0)
    result = imgclf.evaluate(out, checkpoint="last", device="cuda")
    assert 0.0 <= result.accuracy <= 1.0
