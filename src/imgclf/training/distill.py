"""Knowledge distillation: a trained run (the teacher) softens the targets of a new model.

loss = alpha * T^2 * KL(softmax(teacher / T) || softmax(student / T)) + (1 - alpha) * hard loss

The T^2 factor keeps the gradient scale of the soft term independent of T (Hinton et al.).
The teacher sees the same augmented uint8 batch as the student, normalised with its own
mean/std and resized to its own resolution, so any earlier run can teach.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from imgclf.errors import ImgclfError
from imgclf.models.registry import Trust


def kd_divergence(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """KL(p_teacher || p_student) of the temperature-softened distributions, mean over the batch."""
    log_p_student = F.log_softmax(student_logits.float() / temperature, dim=1)   # (N, K)
    log_p_teacher = F.log_softmax(teacher_logits.float() / temperature, dim=1)   # (N, K)
    return F.kl_div(log_p_student, log_p_teacher, reduction="batchmean", log_target=True)


class DistillationLoss(nn.Module):
    """``alpha * T^2 * KL + (1 - alpha) * hard_loss(logits, targets)``; called with the teacher's logits."""

    def __init__(self, hard_loss: nn.Module, temperature: float, alpha: float) -> None:
        super().__init__()
        self.hard_loss, self.temperature, self.alpha = hard_loss, temperature, alpha

    def forward(self, logits: torch.Tensor, targets: torch.Tensor, teacher_logits: torch.Tensor) -> torch.Tensor:
        soft = kd_divergence(logits, teacher_logits, self.temperature) * self.temperature ** 2
        if self.alpha >= 1.0:
            return soft
        return self.alpha * soft + (1.0 - self.alpha) * self.hard_loss(logits, targets)


class Teacher:
    """A frozen run model that maps the student's uint8 batch (B, C, S, S) to its logits (B, K)."""

    def __init__(self, model: nn.Module, mean: torch.Tensor, std: torch.Tensor, img_size: int,
                 channels: int, autocast: object) -> None:
        self.model = model.eval().requires_grad_(False)
        self.mean, self.std = mean.view(1, -1, 1, 1), std.view(1, -1, 1, 1)
        self.img_size, self.channels, self.autocast = img_size, channels, autocast

    @torch.no_grad()
    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        x = images.float() / 255.0
        if x.shape[1] != self.channels:   # grey <-> RGB
            x = x.mean(dim=1, keepdim=True).expand(-1, self.channels, -1, -1) if self.channels == 3 \
                else x.mean(dim=1, keepdim=True)
        if x.shape[-1] != self.img_size:
            x = F.interpolate(x, size=(self.img_size, self.img_size), mode="bilinear", antialias=True,
                              align_corners=False)
        x = (x - self.mean.to(x.device)) / self.std.to(x.device)
        with self.autocast():   # type: ignore[operator]
            return self.model(x).float()


def load_teacher(run_dir: Path, classes: list[str], device: str, precision: str,
                 trust_model_code: Trust = False) -> Teacher:
    """The best weights of ``run_dir`` as a Teacher; its classes must be the student's, in order."""
    from imgclf.engine.inference import load_run_model

    loaded = load_run_model(run_dir, "best", device, precision, trust_model_code=trust_model_code)
    if loaded.classes != classes:
        raise ImgclfError(f"--teacher {run_dir}: its classes {loaded.classes} differ from this data's "
                          f"{classes}; a teacher must be trained on the same classes")
    if loaded.meta.get("output", "softmax") != "softmax":
        raise ImgclfError(f"--teacher {run_dir}: distillation needs a softmax (--loss ce) teacher, "
                          f"this one has output {loaded.meta['output']!r}")
    return Teacher(loaded.model, loaded.mean, loaded.std, loaded.img_size, loaded.channels,
                   loaded.runtime.autocast)
