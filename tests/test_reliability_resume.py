"""Exact resume: stopped mid-epoch, at an epoch boundary and one step before a scheduler milestone.

One uninterrupted deterministic CPU run (multistep schedule, a save and an evaluation
after every step) is copied right after the saves at steps 4, 6 and 11 (what a kill
there would leave); each copy is resumed and must end with the same weights and
optimizer state, and log the same lr and val loss at every step, as the run itself.
"""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import pytest
import torch
from reliability_helpers import record_figures

import imgclf
from imgclf.artifacts import RunDir
from imgclf.engine.checkpoint import load_state, load_weights

SETTINGS = dict(model="small_cnn", batch_size=8, img_size=32, deterministic=True, precision="fp32", device="cpu",
                epochs=3, seed=11, scheduler="multistep", milestones=(2,), gamma=0.1, save_every=1, eval_every=1)
STOPS = {"mid-epoch": 4, "epoch-boundary": 6, "before-milestone": 11}   # 48 images / 8 = 6 steps per epoch


def rows(run: Path) -> list[tuple[str, str, str]]:
    with open(RunDir(run).metrics_csv, newline="") as f:
        return [(r["step"], r["lr"], r["val_loss"]) for r in csv.DictReader(f)]


def tensors_equal(a: object, b: object) -> bool:
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(tensors_equal(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return isinstance(b, (list, tuple)) and len(a) == len(b) and all(map(tensors_equal, a, b))
    return a == b


def train_with_snapshots(data: Path, root: Path, settings: dict, stops: dict[str, int]) -> tuple[Path, dict[str, Path]]:
    """An uninterrupted run in root/full, and copies of its folder taken right after the saves at ``stops``."""
    from imgclf.training.fit import Trainer

    copies = {name: root / name for name in stops}
    original = Trainer.save

    def save_and_snapshot(self: Trainer, best: bool = False) -> None:
        original(self, best)
        for name, step in stops.items():
            if not best and self.state.step == step and not copies[name].exists():
                shutil.copytree(self.run.root, copies[name])

    mp = pytest.MonkeyPatch()
    mp.setattr(Trainer, "save", save_and_snapshot)
    try:
        imgclf.train(data, out=root / "full", **settings)
    finally:
        mp.undo()
    return root / "full", copies


@pytest.fixture(scope="module")
def full_and_stopped(split_data: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Path]]:
    """The uninterrupted run, and copies of it taken right after the saves at STOPS."""
    return train_with_snapshots(split_data, tmp_path_factory.mktemp("resume"), SETTINGS, STOPS)


@pytest.mark.parametrize("where", sorted(STOPS))
def test_resume_is_exact(full_and_stopped: tuple[Path, dict[str, Path]], where: str) -> None:
    full, copies = full_and_stopped
    stopped = copies[where]
    assert int(load_state(RunDir(stopped).resume_state)["step"]) == STOPS[where]
    imgclf.train(resume=stopped)
    a, b = load_state(RunDir(full).resume_state), load_state(RunDir(stopped).resume_state)
    assert a["step"] == b["step"] == 18
    assert tensors_equal(a["model"], b["model"]), "weights differ"
    assert tensors_equal(a["optimizer"], b["optimizer"]), "optimizer state differs"
    wa, _ = load_weights(RunDir(full).weights("last"))
    wb, _ = load_weights(RunDir(stopped).weights("last"))
    assert tensors_equal(wa, wb)
    full_rows, resumed_rows = rows(full), rows(stopped)
    assert len(full_rows) == 18 and resumed_rows == full_rows     # lr and val loss at every step
    lrs = [float(r[1]) for r in full_rows]
    assert lrs[12] == pytest.approx(lrs[10] * 0.1)              # the milestone really is crossed at step 12
    record_figures(f"exact_resume_{where}", stop_step=STOPS[where], steps_compared=len(full_rows),
                   weights_equal=True, optimizer_equal=True)
