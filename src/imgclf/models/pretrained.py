"""Weights from a local file (``--pretrained PATH``) or torchvision's cache (``--weights DEFAULT``).

Nothing is ever downloaded: ``--weights`` uses the file only when it is already in
``torch.hub.get_dir()/checkpoints``, and otherwise says exactly which file to put there.
Loading is tolerant on purpose (fine-tuning): every tensor whose name and shape match is
copied, and a report lists what was missing, unexpected or of another shape (a head for
another class count stays freshly initialised: the head is "replaced").
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from imgclf.errors import ImgclfError

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


def cached_weights_file(model_name: str, weights: str) -> Path:
    """Where torchvision keeps the weights ``weights`` (e.g. DEFAULT) of ``model_name`` in the hub cache."""
    import torchvision

    try:
        enum = torchvision.models.get_model_weights(model_name)
        chosen = enum[weights] if weights != "DEFAULT" else enum.DEFAULT
    except (ValueError, KeyError) as err:
        raise ImgclfError(f"--weights {weights}: torchvision has no such weights for {model_name} ({err})") from None
    file_name = chosen.url.rsplit("/", 1)[-1]
    return Path(torch.hub.get_dir()) / "checkpoints" / file_name


def load_torchvision_weights(model: nn.Module, model_name: str, weights: str) -> LoadReport:
    """``--weights DEFAULT``: torchvision's weights if already cached; never downloads."""
    path = cached_weights_file(model_name, weights)
    if not path.is_file():
        import torchvision

        enum = torchvision.models.get_model_weights(model_name)
        url = (enum.DEFAULT if weights == "DEFAULT" else enum[weights]).url
        raise ImgclfError(
            f"--weights {weights}: {path.name} is not in the local torch hub cache and imgclf never downloads. "
            f"Either copy the file to {path} (it is {url}), or pass the file with --pretrained PATH")
    return load_matching(model, read_state_dict(path))
