"""The training engine: registries, transforms, schedules, checkpoints, the loop and resume."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import pytest
import torch

import imgclf
from imgclf.artifacts import RunDir
from imgclf.data.transforms import augment_batch, random_crop, sample_augment_params
from imgclf.engine.checkpoint import load_state, load_weights, save_weights
from imgclf.errors import CheckpointError, UsageError
from imgclf.models.registry import create_model, head_parameter_names, list_models
from imgclf.training.optim import create_optimizer
from schedule_reference import ScheduleSpec, lr_factor


def read_metrics(run: Path) -> list[dict[str, str]]:
    with open(RunDir(run).metrics_csv, newline="") as f:
        return list(csv.DictReader(f))


@pytest.mark.parametrize("name", ["small_cnn", "resnet18", "mobilenet_v3_small"])
def test_create_model_fits_class_count_and_channels(name: str) -> None:
    model = create_model(name, num_classes=5, in_channels=1).eval()
    logits = model(torch.zeros(2, 1, 64, 64))
    assert logits.shape == (2, 5)


def test_registry_lists_torchvision_models_and_rejects_unknown() -> None:
    names = list_models()
    assert {"small_cnn", "resnet18", "vit_b_16"} <= set(names)
    with pytest.raises(UsageError, match="resnet"):
        create_model("resnet1", 3)


def test_user_model_by_import_path() -> None:
    model = create_model("imgclf.models.small_cnn:SmallCNN", 4)
    assert model(torch.zeros(1, 3, 28, 28)).shape == (1, 4)
    assert head_parameter_names(model) == {"classifier.4.weight", "classifier.4.bias"}


def test_random_crop_matches_the_per_image_definition() -> None:
    images = torch.randint(0, 256, (6, 3, 8, 8), dtype=torch.uint8)
    params = sample_augment_params(6, 2, False, torch.Generator().manual_seed(3))
    out = random_crop(images, 2, params.dy, params.dx)
    dy, dx = params.dy, params.dx
    padded = torch.nn.functional.pad(images, (2, 2, 2, 2))
    for i in range(6):
        expected = padded[i, :, dy[i]:dy[i] + 8, dx[i]:dx[i] + 8]
        assert torch.equal(out[i], expected)


def test_augmentation_distribution_is_that_of_the_per_image_transforms() -> None:
    """Offsets uniform over 0..2p, flips at rate 1/2: measured on 4,000 one-hot images."""
    n, size, pad = 4000, 9, 2
    images = torch.zeros(n, 1, size, size, dtype=torch.uint8)
    images[:, 0, 4, 4] = 255                      # a single bright pixel at the centre
    out = augment_batch(images, pad, True, torch.Generator().manual_seed(0))
    where = out.view(n, -1).argmax(1)
    cols = where % size
    rows = where // size
    row_counts = torch.bincount(rows, minlength=size)[2:7].float()
    assert torch.all((row_counts / n - 0.2).abs() < 0.03)   # 5 equally likely offsets
    col_counts = torch.bincount(cols, minlength=size)[2:7].float()
    assert torch.all((col_counts / n - 0.2).abs() < 0.03)   # crop offsets + flips stay uniform


def test_schedule_warmup_then_cosine_to_zero() -> None:
    spec = ScheduleSpec("cosine", total_epochs=10, warmup_epochs=1)
    assert lr_factor(0, spec) == pytest.approx(0.1)
    assert lr_factor(1, spec) == pytest.approx(1.0)
    assert lr_factor(5.5, spec) == pytest.approx(0.5)
    assert lr_factor(10, spec) == pytest.approx(0.0, abs=1e-12)
    multistep = ScheduleSpec("multistep", total_epochs=10, milestones=(3, 6), gamma=0.1)
    assert [lr_factor(e, multistep) for e in (2.9, 3, 6)] == pytest.approx([1, 0.1, 0.01])


def test_weight_decay_skips_biases_and_norms() -> None:
    model = create_model("resnet18", 3)
    opt = create_optimizer("sgd", model, lr=0.1, weight_decay=5e-4)
    decayed = {id(p) for g in opt.param_groups if g["weight_decay"] > 0 for p in g["params"]}
    assert all(p.ndim > 1 for p in model.parameters() if id(p) in decayed)
    assert id(model.bn1.weight) not in decayed


def test_weights_round_trip_and_bad_files_name_the_file(tmp_path: Path) -> None:
    state = {"a": torch.arange(6.0).view(2, 3), "b": torch.ones(3, dtype=torch.bfloat16)}
    path = tmp_path / "w.safetensors"
    save_weights(path, state, {"model": "x", "classes": ["é", "<b>"]})
    loaded, meta = load_weights(path)
    assert torch.equal(loaded["a"], state["a"]) and meta["classes"] == ["é", "<b>"]
    path.write_bytes(path.read_bytes()[:40])
    with pytest.raises(CheckpointError, match="w.safetensors"):
        load_weights(path)


def test_resume_state_refuses_pickled_code(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):  # noqa: D105
            return (open, (str(marker), "w"))

    bad = tmp_path / "last.state.pt"
    torch.save({"step": 1, "x": Payload()}, bad)
    with pytest.raises(CheckpointError, match="last.state.pt"):
        load_state(bad)
    assert not marker.exists()


def test_train_writes_the_run_folder(trained_run: Path, split_data: Path) -> None:
    run = RunDir(trained_run)
    for path in (run.config_json, run.classes_json, run.metrics_csv, run.summary_json, run.weights("best"),
                 run.weights("last"), run.resume_state):
        assert path.is_file(), path
    assert any(run.tensorboard_dir.glob("events.out.tfevents.*"))
    rows = read_metrics(trained_run)
    assert [int(r["step"]) for r in rows] == [3, 6]          # 48 images / 16 per batch, 2 epochs
    assert all(int(r["val_images"]) == 15 for r in rows)
    assert not list(run.checkpoints_dir.glob(".imgclf-tmp-*"))


def test_tensorboard_has_the_same_numbers_as_metrics_csv(trained_run: Path) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(RunDir(trained_run).tensorboard_dir))
    acc.Reload()
    logged = [(e.step, e.value) for e in acc.Scalars("val_acc")]
    rows = read_metrics(trained_run)
    assert logged == [(int(r["step"]), pytest.approx(float(r["val_acc"]), abs=1e-6)) for r in rows]


def snapshot_run_at(monkeypatch: pytest.MonkeyPatch, step: int, copy_to: Path) -> None:
    """Copy the whole run folder right after the save at ``step``: the state a kill would leave."""
    import shutil

    from imgclf.training.fit import Trainer

    original = Trainer.save

    def save_and_snapshot(self: Trainer, best: bool = False) -> None:
        original(self, best)
        if not best and self.state.step == step and not copy_to.exists():
            shutil.copytree(self.run.root, copy_to)

    monkeypatch.setattr(Trainer, "save", save_and_snapshot)


COMMON = dict(model="small_cnn", batch_size=16, img_size=32, deterministic=True, precision="fp32", epochs=3)


def assert_same_weights(a: Path, b: Path) -> None:
    wa, _ = load_weights(RunDir(a).weights("last"))
    wb, _ = load_weights(RunDir(b).weights("last"))
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


def test_same_seed_same_metrics(split_data: Path, tmp_path: Path) -> None:
    imgclf.train(split_data, out=tmp_path / "a", seed=3, **COMMON)
    imgclf.train(split_data, out=tmp_path / "b", seed=3, **COMMON)
    strip = lambda rows: [{k: v for k, v in r.items() if k not in ("img_per_s", "elapsed_s")} for r in rows]
    assert strip(read_metrics(tmp_path / "a")) == strip(read_metrics(tmp_path / "b"))
    assert_same_weights(tmp_path / "a", tmp_path / "b")


@pytest.mark.parametrize("stop_step, save_every", [(6, 0), (4, 4)], ids=["epoch-boundary", "mid-epoch"])
def test_resume_ends_with_the_same_weights(split_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                           stop_step: int, save_every: int) -> None:
    imgclf.train(split_data, out=tmp_path / "full", seed=5, **COMMON)
    snapshot_run_at(monkeypatch, stop_step, tmp_path / "stopped")
    imgclf.train(split_data, out=tmp_path / "run", seed=5, save_every=save_every, **COMMON)
    monkeypatch.undo()
    assert load_state(RunDir(tmp_path / "stopped").resume_state)["step"] == stop_step
    imgclf.train(resume=tmp_path / "stopped", save_every=save_every)
    assert_same_weights(tmp_path / "full", tmp_path / "stopped")
    full, resumed = read_metrics(tmp_path / "full"), read_metrics(tmp_path / "stopped")
    assert [(r["step"], r["val_loss"], r["lr"]) for r in resumed] == [(r["step"], r["val_loss"], r["lr"]) for r in full]


def test_resume_may_raise_epochs(trained_run: Path, tmp_path: Path) -> None:
    import shutil

    run = tmp_path / "longer"
    shutil.copytree(trained_run, run)
    imgclf.train(resume=run, epochs=3)
    assert [int(r["step"]) for r in read_metrics(run)] == [3, 6, 9]


def test_existing_out_is_never_overwritten(split_data: Path, tmp_path: Path) -> None:
    out = tmp_path / "taken"
    out.mkdir()
    (out / "mine.txt").write_text("keep me")
    assert imgclf.cli.main(["train", str(split_data), "--out", str(out), "--epochs", "1"]) == 1
    assert (out / "mine.txt").read_text() == "keep me"


def test_predict_and_inspect(trained_run: Path, split_data: Path, capsys: pytest.CaptureFixture[str]) -> None:
    result = imgclf.predict(trained_run, [split_data / "val" / "circle"], topk=2)
    assert len(result.predictions) == 5
    assert all(math.isclose(sum(t["prob"] for t in r["top"]), sum(t["prob"] for t in r["top"])) for r in result.predictions)
    info = imgclf.inspect(trained_run).info
    assert info["total_parameters"] == sum(p["numel"] for p in info["parameters"])
    assert info["optimizer"]["step"] == 6
    assert "classifier.4.weight" in capsys.readouterr().out


def test_evaluation_pass_returns_freed_memory_without_changing_results(monkeypatch: pytest.MonkeyPatch) -> None:
    from imgclf.data.sources import TensorSource
    from imgclf.engine import evaluation
    from imgclf.engine.runtime import resolve_runtime

    torch.manual_seed(0)
    source = TensorSource(torch.randint(0, 256, (40, 3, 16, 16), dtype=torch.uint8), torch.arange(40) % 4)
    model = create_model("small_cnn", 4, 3)
    runtime = resolve_runtime("cpu", "fp32")
    mean, std = torch.full((3,), 0.5), torch.full((3,), 0.25)
    plain, _ = evaluation.predict_logits(model, source, runtime, mean, std, batch_size=8)
    trims: list[int] = []
    real = evaluation.release_freed_memory
    monkeypatch.setattr(evaluation, "release_freed_memory", lambda: (trims.append(1), real()))
    monkeypatch.setattr(evaluation, "TRIM_GROWTH", -1)   # trim after every batch
    trimmed, _ = evaluation.predict_logits(model, source, runtime, mean, std, batch_size=8)
    assert evaluation.resident_bytes() > 0
    assert len(trims) == 5
    assert torch.equal(plain, trimmed)
