"""The training-toolbox parts of ``imgclf train`` (config -> objects), kept out of the orchestration.

Each function turns a few :class:`TrainConfig` fields into a library object: the data
(single- or multi-label), the model's output kind, its starting weights, the loss (with
class weights and a distillation teacher), the lr schedule and the epoch-order function.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from imgclf.config import TrainConfig
from imgclf.console import status, warn
from imgclf.data.training import TrainingData, load_training_data
from imgclf.errors import ImgclfError


def multi_label_of(cfg: TrainConfig) -> bool:
    """``--multi-label``, or the multi-label layout (``train/labels.csv``) detected in DATA."""
    from imgclf.data.multilabel import is_multilabel

    detected = cfg.data is not None and is_multilabel(cfg.data)
    if cfg.multi_label and not detected:
        raise ImgclfError(f"--multi-label: {cfg.data}/train/labels.csv not found (write it with imgclf prepare "
                          "from label files or a CSV with several labels per image)")
    return detected


def load_data(cfg: TrainConfig, pin: bool) -> TrainingData:
    """Single- or multi-label training data; warns about class imbalance."""
    from imgclf.data.balance import imbalance_warning
    from imgclf.data.multilabel import load_multilabel_data

    assert cfg.data is not None
    channels = 1 if cfg.channels == "gray" else 3
    if multi_label_of(cfg):
        data = load_multilabel_data(cfg.data, cfg.img_size, channels, cfg.cache_gb, cfg.workers)
    else:
        data = load_training_data(cfg.data, cfg.img_size, channels, cfg.cache, cfg.cache_gb, cfg.workers, pin=pin)
    message = imbalance_warning(data.train_counts)
    if message and cfg.balance == "none":
        warn(message)
    return data


def output_of(cfg: TrainConfig, data: TrainingData) -> str:
    """The model's output kind: softmax, sigmoid1 (--loss bce) or multilabel."""
    from imgclf.losses import output_kind

    if multi_label_of(cfg):
        return "multilabel"
    if cfg.loss == "bce" and len(data.classes) != 2:
        raise ImgclfError(f"--loss bce: needs exactly two classes, found {len(data.classes)} "
                          f"({', '.join(data.classes[:6])}); use --loss ce")
    return output_kind(cfg.loss)


def load_start_weights(cfg: TrainConfig, model: nn.Module) -> None:
    """``--pretrained PATH`` or ``--weights NAME`` (cache only), with a report of what was loaded."""
    from imgclf.models.pretrained import load_pretrained, load_torchvision_weights

    if cfg.pretrained is not None:
        status(f"--pretrained {cfg.pretrained}: {load_pretrained(model, cfg.pretrained).summary()}")
    elif cfg.weights != "none":
        status(f"--weights {cfg.weights}: {load_torchvision_weights(model, cfg.model, cfg.weights).summary()}")


def make_loss(cfg: TrainConfig, data: TrainingData, output: str, device: torch.device) -> nn.Module:
    """The hard loss of the output kind, class-weighted with ``--balance loss``, wrapped for ``--teacher``."""
    from imgclf.data.balance import class_weights, positive_weights
    from imgclf.engine.distill import DistillationLoss
    from imgclf.losses import create_loss

    weights = None
    if cfg.balance == "loss":
        counts = torch.tensor([float(data.train_counts[c]) for c in data.classes])
        weights = positive_weights(counts, data.train.num_images) if output == "multilabel" else class_weights(counts)
        status(f"--balance loss: class weights {[round(w, 3) for w in weights.tolist()]}")
    name = {"softmax": "ce", "sigmoid1": "bce", "multilabel": "multilabel"}[output]
    loss = create_loss(name, cfg.label_smoothing, weights).to(device)
    if cfg.teacher is not None:
        loss = DistillationLoss(loss, cfg.kd_temperature, cfg.kd_alpha)
    return loss


def make_teacher(cfg: TrainConfig, data: TrainingData) -> Callable[[torch.Tensor], torch.Tensor] | None:
    from imgclf.engine.distill import load_teacher

    if cfg.teacher is None:
        return None
    teacher = load_teacher(cfg.teacher, data.classes, cfg.device, cfg.precision)
    status(f"distilling from {cfg.teacher} (T={cfg.kd_temperature}, alpha={cfg.kd_alpha})")
    return teacher


def make_schedule(cfg: TrainConfig, steps_per_epoch: int) -> Any:
    from imgclf.schedules import create_schedule

    defaults = {"step_size": cfg.step_size, "milestones": cfg.milestones, "gamma": cfg.gamma}
    return create_schedule(cfg.scheduler, cfg.sched_args, steps_per_epoch, cfg.epochs, cfg.warmup_epochs, defaults)


def make_order_fn(cfg: TrainConfig, data: TrainingData) -> Callable[[int, int, int], torch.Tensor] | None:
    """A class-balanced epoch order for ``--balance sampler`` (cached single-label data only)."""
    from imgclf.data.balance import sampler_order_fn

    if cfg.balance != "sampler":
        return None
    targets = getattr(data.train, "targets", None)
    if targets is None:
        targets = torch.tensor(data.train.dataset.targets)  # type: ignore[attr-defined]
    return sampler_order_fn(torch.as_tensor(targets))


def toolbox_meta(cfg: TrainConfig, output: str, num_classes: int) -> dict[str, Any]:
    """What the checkpoint metadata needs beyond the engine's: the output kind and head size."""
    from imgclf.losses import num_model_outputs

    return {"output": output, "num_outputs": num_model_outputs(output, num_classes), "threshold": cfg.threshold}
