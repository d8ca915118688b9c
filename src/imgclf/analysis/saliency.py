"""Grad-CAM (Selvaraju et al., 2017): which part of the image drove the score of a class.

The activations A (B, C, h, w) of one layer are captured with a forward hook; the gradient of the
class score (the logit, before any softmax or temperature) with respect to A is averaged over
space to weigh each channel; CAM = ReLU(sum_c w_c A_c), scaled to [0, 1] per image and resized
bilinearly to the model's input. The model runs in eval mode in fp32, so images never influence
each other (BatchNorm uses its running statistics) and one backward pass serves a whole batch.

The layer is found automatically: the last module, in forward order, that outputs a spatial map
(B, C, h, w) with h*w > 1 and runs after the last Conv2d (ResNets: ``layer4``; small_cnn:
``features``; most torchvision CNNs: ``features``), or named with ``--layer``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from imgclf.data.transforms import Preprocess, to_float
from imgclf.errors import UsageError

AUTO_LAYER = "auto"


@dataclass(frozen=True)
class CamSetup:
    """What Grad-CAM needs besides the images: an unfused model, its input pipeline and a layer name."""

    model: nn.Module
    layer: str
    device: torch.device
    mean: torch.Tensor                 # (C,) on the device
    std: torch.Tensor                  # (C,) on the device
    preprocess: Preprocess | None
    output: str                        # output kind (imgclf.models.outputs)


def _spatial_outputs(model: nn.Module, sample: torch.Tensor) -> list[tuple[str, nn.Module, torch.Size | None]]:
    """(name, module, output shape or None) for every module call of one forward pass, in firing order."""
    fired: list[tuple[str, nn.Module, torch.Size | None]] = []
    names = {module: name for name, module in model.named_modules() if name}

    def record(module: nn.Module, _inputs: object, output: object) -> None:
        shape = output.shape if isinstance(output, torch.Tensor) else None
        fired.append((names[module], module, shape))

    handles = [module.register_forward_hook(record) for module in names]
    try:
        with torch.no_grad():
            model(sample)
    finally:
        for handle in handles:
            handle.remove()
    return fired


def spatial_layers(model: nn.Module, sample: torch.Tensor) -> list[str]:
    """Names of the modules whose output is a (B, C, h, w) map with h*w > 1, in forward order."""
    seen: dict[str, None] = {}
    for name, _, shape in _spatial_outputs(model, sample):
        if shape is not None and len(shape) == 4 and shape[2] * shape[3] > 1:
            seen[name] = None
    return list(seen)


def find_cam_layer(model: nn.Module, sample: torch.Tensor) -> str:
    """The deepest spatial feature map: the last 4-D (h*w > 1) output at or after the last Conv2d."""
    fired = _spatial_outputs(model, sample)
    convs = [i for i, (_, module, _) in enumerate(fired) if isinstance(module, nn.Conv2d)]
    if not convs:
        raise UsageError("--layer: this model has no Conv2d layer, so no layer could be chosen for Grad-CAM; "
                         "name one whose output is a (B, C, h, w) feature map (see imgclf inspect RUN)")
    candidates = [name for name, _, shape in fired[convs[-1]:]
                  if shape is not None and len(shape) == 4 and shape[2] * shape[3] > 1]
    return candidates[-1] if candidates else fired[convs[-1]][0]


def resolve_layer(model: nn.Module, name: str, sample: torch.Tensor) -> str:
    """``name`` checked against the model's modules (``auto``: :func:`find_cam_layer`)."""
    if name == AUTO_LAYER:
        return find_cam_layer(model, sample)
    modules = dict(model.named_modules())
    if name not in modules or not name:
        choices = spatial_layers(model, sample)[-8:]
        raise UsageError(f"--layer {name}: no such module in this model; the deepest layers with a spatial "
                         f"output are: {', '.join(choices) or 'none'} (all names: imgclf inspect RUN)")
    return name


def _logit_of(logits: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
    return logits.gather(1, classes.view(-1, 1)).squeeze(1)


def _signed_single_logit(logits: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
    return torch.where(classes == 1, logits[:, 0], -logits[:, 0])   # class 1 = +logit, class 0 = -logit


# the score whose gradient Grad-CAM follows, per output kind: (B, outputs) logits, (B,) classes -> (B,)
CLASS_SCORE: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "softmax": _logit_of,
    "sigmoid1": _signed_single_logit,
    "multilabel": _logit_of,
}


def _cams(activations: torch.Tensor, gradients: torch.Tensor, size: int) -> torch.Tensor:
    """(B, C, h, w) activations and gradients -> (B, size, size) maps in [0, 1]."""
    weights = gradients.mean(dim=(2, 3), keepdim=True)                    # (B, C, 1, 1)
    cam = F.relu((weights * activations).sum(dim=1, keepdim=True))        # (B, 1, h, w)
    cam = F.interpolate(cam, size=(size, size), mode="bilinear", align_corners=False).squeeze(1)
    peak = cam.flatten(1).max(dim=1).values.clamp_min(1e-12)
    return (cam / peak[:, None, None]).clamp(0.0, 1.0)


def grad_cam_batch(setup: CamSetup, images: torch.Tensor, class_sets: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """One (B, S, S) map in [0, 1] per entry of ``class_sets`` ((B,) class indices) for uint8 images (B, C, S, S)."""
    layer = dict(setup.model.named_modules())[setup.layer]
    captured: list[torch.Tensor] = []

    def keep(_module: nn.Module, _inputs: object, output: torch.Tensor) -> torch.Tensor:
        captured.append(output)
        return output.clone()   # later in-place ops (ReLU(inplace=True)) then leave the captured map intact

    handle = layer.register_forward_hook(keep)
    try:
        with torch.enable_grad():
            batch = images.to(setup.device)
            if setup.preprocess is not None:
                batch = setup.preprocess(batch)
            x = to_float(batch, setup.mean, setup.std).requires_grad_(True)
            logits = setup.model(x).float()
            activations = captured[-1]
            maps = []
            for n, classes in enumerate(class_sets):
                score = CLASS_SCORE[setup.output](logits, classes.to(setup.device)).sum()
                (gradients,) = torch.autograd.grad(score, activations, retain_graph=n < len(class_sets) - 1)
                maps.append(_cams(activations.detach(), gradients, images.shape[-1]).cpu())
    finally:
        handle.remove()
    return maps


def grad_cam(setup: CamSetup, images: torch.Tensor, class_sets: Sequence[torch.Tensor],
             batch_size: int = 32) -> list[np.ndarray]:
    """One (N, S, S) float32 array in [0, 1] per entry of ``class_sets`` ((N,) class indices)."""
    parts: list[list[torch.Tensor]] = [[] for _ in class_sets]
    for start in range(0, images.shape[0], batch_size):
        stop = start + batch_size
        for part, cams in zip(parts, grad_cam_batch(setup, images[start:stop], [c[start:stop] for c in class_sets])):
            part.append(cams)
    size = images.shape[-1]
    return [torch.cat(p).numpy() if p else np.zeros((0, size, size), np.float32) for p in parts]


def peak_position(cam: np.ndarray) -> tuple[int, int]:
    """(row, col) of a map's maximum (the first one on ties)."""
    row, col = np.unravel_index(int(np.argmax(cam)), cam.shape)
    return int(row), int(col)
