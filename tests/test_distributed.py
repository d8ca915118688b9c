"""Multi-process training through torchrun + DDP, 2 gloo processes on the CPU."""

from __future__ import annotations

import csv
import os
from pathlib import Path

import pytest
import torch

import imgclf
from imgclf.artifacts import RunDir
from imgclf.cli import main
from imgclf.engine.distributed import Dist, eval_shard
from imgclf.training.fit import epoch_batches

TESTS = Path(__file__).parent


def metrics(run: Path) -> list[dict[str, str]]:
    with open(RunDir(run).metrics_csv, newline="") as f:
        return list(csv.DictReader(f))


def test_shards_are_disjoint_cover_the_global_batch_and_change_every_epoch() -> None:
    ranks = [Dist(rank=r, world_size=2) for r in range(2)]
    epoch0 = [epoch_batches(40, 4, seed=0, epoch=0, ctx=c) for c in ranks]
    epoch1 = [epoch_batches(40, 4, seed=0, epoch=1, ctx=c) for c in ranks]
    single = epoch_batches(40, 8, seed=0, epoch=0)
    assert len(epoch0[0]) == len(epoch0[1]) == 5
    for step in range(5):
        a, b = epoch0[0][step], epoch0[1][step]
        assert not set(a.tolist()) & set(b.tolist())
        assert torch.equal(torch.cat([a, b]), single[step])     # 2 x 4 sees what 1 x 8 sees
    assert not torch.equal(torch.cat(epoch0[0]), torch.cat(epoch1[0]))


def test_eval_shards_cover_every_image_exactly_once() -> None:
    for n in (0, 1, 15, 16):
        parts = [eval_shard(n, Dist(rank=r, world_size=2)).tolist() for r in range(2)]
        assert sorted(parts[0] + parts[1]) == list(range(n))


@pytest.fixture(scope="module")
def ddp_env() -> None:
    old = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(TESTS), old]))
    yield
    if old is None:
        os.environ.pop("PYTHONPATH")
    else:
        os.environ["PYTHONPATH"] = old


COMMON = ["--model", "ddp_models:TinyConvNet", "--epochs", "2", "--img-size", "32", "--precision", "fp32",
          "--seed", "0", "--lr", "0.05", "--no-hflip"]


def test_two_processes_train_and_log_exact_val_metrics(split_data: Path, tmp_path: Path, ddp_env: None) -> None:
    out = tmp_path / "ddp"
    assert main(["train", str(split_data), "--out", str(out), "--nproc", "2", "--batch-size", "8", *COMMON]) == 0
    rows = metrics(out)
    assert [int(r["step"]) for r in rows] == [3, 6]          # 48 images / (2 x 8) per step
    assert all(int(r["val_images"]) == 15 for r in rows)     # odd val split, each image once
    # only rank 0 wrote: one TensorBoard writer, no temp files, one set of checkpoints
    assert len(list(RunDir(out).tensorboard_dir.glob("events.out.tfevents.*"))) == 1
    assert not list(out.rglob(".imgclf-tmp-*"))
    result = imgclf.evaluate(out, checkpoint="last", precision="fp32", trust_model_code=True)
    assert result.accuracy == pytest.approx(float(rows[-1]["val_acc"]), abs=1e-6)
    assert result.loss == pytest.approx(float(rows[-1]["val_loss"]), abs=1e-5)


def test_loss_parity_two_by_eight_against_one_by_sixteen(split_data: Path, tmp_path: Path, ddp_env: None) -> None:
    """Same seed, same weights: first-epoch losses agree to 1e-4 (float summation order only)."""
    assert main(["train", str(split_data), "--out", str(tmp_path / "two"), "--nproc", "2", "--batch-size", "8",
                 *COMMON]) == 0
    assert main(["train", str(split_data), "--out", str(tmp_path / "one"), "--batch-size", "16", *COMMON]) == 0
    two, one = metrics(tmp_path / "two"), metrics(tmp_path / "one")
    assert float(two[0]["train_loss"]) == pytest.approx(float(one[0]["train_loss"]), abs=1e-4)
    assert float(two[0]["val_loss"]) == pytest.approx(float(one[0]["val_loss"]), abs=1e-4)


def test_resume_with_another_world_size_says_how(trained_run: Path, tmp_path: Path, ddp_env: None,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    import shutil

    run = tmp_path / "r"
    shutil.copytree(trained_run, run)
    assert main(["train", "--resume", str(run), "--nproc", "2", "--epochs", "3"]) == 1
    assert "--nproc 1" in capsys.readouterr().err
