"""Weights from a local file (``--pretrained PATH``) or torchvision's weights (``--weights DEFAULT``).

``--weights`` names torchvision's own weights (its weights API gives the URL, the file name with
its hash and the eval transforms); the file is read from ``torch.hub.get_dir()/checkpoints`` and
downloaded there first when missing (:mod:`imgclf.models.download`: hash-checked, all or nothing),
unless ``--offline`` / ``IMGCLF_OFFLINE=1``.
Loading is tolerant on purpose (fine-tuning): every tensor whose name and shape match is
copied, and a report lists what was missing, unexpected or of another shape (a head for
another class count stays freshly initialised: the head is "replaced").
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from imgclf.console import status
from imgclf.errors import ImgclfError, UsageError

WRAPPER_KEYS = ("state_dict", "model", "model_state_dict", "weights")
PREFIXES = ("module.", "_orig_mod.")   # DDP and torch.compile wrappers


@dataclass
class LoadReport:
    loaded: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)        # in the model, not in the file
    unexpected: list[str] = field(default_factory=list)     # in the file, not in the model
    mismatched: list[tuple[str, tuple[int, ...], tuple[int, ...]]] = field(default_factory=list)  # name, file, model
    adapted: list[str] = field(default_factory=list)        # 3-channel stems averaged to 1 channel

    def summary(self) -> str:
        parts = [f"loaded {len(self.loaded)} tensors"]
        if self.adapted:
            parts.append(f"adapted to grey input: {', '.join(self.adapted)}")
        if self.mismatched:
            parts.append("kept fresh (other shape): " + ", ".join(
                f"{n} {list(a)} vs {list(b)}" for n, a, b in self.mismatched[:6]))
        if self.missing:
            parts.append(f"{len(self.missing)} missing: {', '.join(self.missing[:6])}" + (" ..." if len(self.missing) > 6 else ""))
        if self.unexpected:
            parts.append(f"{len(self.unexpected)} unexpected: {', '.join(self.unexpected[:6])}"
                         + (" ..." if len(self.unexpected) > 6 else ""))
        return "; ".join(parts)


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Tensors of a safetensors file or of a torch file loaded with ``weights_only=True``."""
    path = Path(path)
    if not path.is_file():
        raise ImgclfError(f"--pretrained {path}: file not found")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            state = load_file(str(path))
        except Exception as err:  # noqa: BLE001 - any failure means: not a usable file
            raise ImgclfError(f"--pretrained {path}: not a valid safetensors file ({err})") from None
    else:
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:  # noqa: BLE001
            reason = (str(err).splitlines() or [type(err).__name__])[0][:200]
            raise ImgclfError(f"--pretrained {path}: cannot be loaded safely as a state_dict ({reason})") from None
    return _unwrap(state, path)


def _unwrap(state: object, path: Path) -> dict[str, torch.Tensor]:
    for key in WRAPPER_KEYS:
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or not any(isinstance(v, torch.Tensor) for v in state.values()):
        raise ImgclfError(f"--pretrained {path}: holds no state_dict (a dict of tensors)")
    out = {}
    for name, value in state.items():
        if isinstance(value, torch.Tensor):
            for prefix in PREFIXES:
                name = name.removeprefix(prefix)
            out[name] = value
    return out


def load_matching(model: nn.Module, state: dict[str, torch.Tensor]) -> LoadReport:
    """Copy every tensor of ``state`` whose name and shape fit ``model``; report the rest."""
    report = LoadReport()
    own = model.state_dict()
    take: dict[str, torch.Tensor] = {}
    for name, value in state.items():
        if name not in own:
            report.unexpected.append(name)
        elif value.shape == own[name].shape:
            take[name] = value
        elif _grey_stem(value, own[name]):
            take[name] = value.mean(dim=1, keepdim=True)
            report.adapted.append(name)
        else:
            report.mismatched.append((name, tuple(value.shape), tuple(own[name].shape)))
    model.load_state_dict(take, strict=False)
    report.loaded = sorted(take)
    report.missing = sorted(n for n in own if n not in take and n not in {m[0] for m in report.mismatched})
    return report


def _grey_stem(value: torch.Tensor, target: torch.Tensor) -> bool:
    """A 3-channel conv kernel loaded into a 1-channel stem (grey input): average the channels."""
    return value.ndim == 4 and target.ndim == 4 and value.shape[1] == 3 and target.shape[1] == 1 \
        and value.shape[0] == target.shape[0] and value.shape[2:] == target.shape[2:]


def load_pretrained(model: nn.Module, path: Path) -> LoadReport:
    """``--pretrained PATH``: load what fits; an error when nothing at all matched."""
    report = load_matching(model, read_state_dict(path))
    if not report.loaded:
        raise ImgclfError(f"--pretrained {path}: no tensor fits this model (names and shapes all differ); "
                          "was it saved from the same architecture (--model)?")
    return report


def torchvision_weights(model_name: str, weights: str) -> Any:
    """torchvision's ``Weights`` entry (url, transforms, meta) for ``--weights NAME`` of ``model_name``."""
    import torchvision

    if model_name.startswith("timm/") or ":" in model_name:
        raise UsageError(f"--weights {weights}: only for torchvision models; for {model_name} pass a local file "
                         "with --pretrained PATH")
    try:
        enum = torchvision.models.get_model_weights(model_name)
        return enum.DEFAULT if weights == "DEFAULT" else enum[weights]
    except (ValueError, KeyError):
        try:
            names = ", ".join(["DEFAULT", *torchvision.models.get_model_weights(model_name).__members__])
        except ValueError:
            names = "none (torchvision has no weights for this model)"
        raise UsageError(f"--weights {weights}: not a torchvision weights name for {model_name}; choose from "
                         f"{names}") from None


def cached_weights_file(model_name: str, weights: str) -> Path:
    """Where torchvision keeps the weights ``weights`` (e.g. DEFAULT) of ``model_name`` in the hub cache."""
    file_name = torchvision_weights(model_name, weights).url.rsplit("/", 1)[-1]
    return Path(torch.hub.get_dir()) / "checkpoints" / file_name


def weights_recipe(model_name: str, weights: str) -> tuple[int, str | None, bool]:
    """(resolution, normalisation kind, has a Linear head) for fine-tuning from these weights.

    The resolution is the weights' own eval crop, the normalisation ``imagenet`` when they use
    ImageNet's mean/std; the head check (on the meta device: no memory, no init cost) tells
    whether a separate head learning rate applies (SqueezeNet's head is a conv).
    """
    from imgclf.data.transforms import IMAGENET_MEAN, IMAGENET_STD
    from imgclf.models.registry import create_model, find_head

    preset = torchvision_weights(model_name, weights).transforms()
    imagenet = all(abs(a - b) < 1e-6 for a, b in zip(list(preset.mean) + list(preset.std),
                                                      IMAGENET_MEAN + IMAGENET_STD))
    with torch.device("meta"):
        model = create_model(model_name, 2)
    try:
        find_head(model)
        linear_head = True
    except ImgclfError:
        linear_head = False
    return int(preset.crop_size[0]), "imagenet" if imagenet else None, linear_head


def fetch_torchvision_weights(model_name: str, weights: str, offline: bool = False) -> Path:
    """The hub-cache file of ``--weights NAME``, downloaded there first when missing (unless offline)."""
    from imgclf.models.download import download_file, offline_mode

    url = torchvision_weights(model_name, weights).url
    path = cached_weights_file(model_name, weights)
    if not path.is_file():
        if offline_mode(offline):
            raise ImgclfError(f"--weights {weights}: {path.name} is not in the torch hub cache and downloads are "
                              f"off (--offline or IMGCLF_OFFLINE). Download {url} and place it at {path}, or pass "
                              "a local file with --pretrained PATH")
        status(f"--weights {weights}: downloading {url} to {path}")
        download_file(url, path, f"--weights {weights}")
    return path


def load_torchvision_weights(model: nn.Module, model_name: str, weights: str, offline: bool = False) -> LoadReport:
    """``--weights DEFAULT``: torchvision's weights from the hub cache (fetched first when missing)."""
    return load_matching(model, read_state_dict(fetch_torchvision_weights(model_name, weights, offline)))
