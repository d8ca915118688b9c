"""Load a trained run and predict with exactly its eval preprocessing, in large batches."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from imgclf.artifacts import RunDir
from imgclf.data.folders import list_images, list_split
from imgclf.data.decode import is_image_name
from imgclf.data.loading import load_images
from imgclf.data.sources import TensorSource
from imgclf.data.preprocess import make_preprocess
from imgclf.engine.checkpoint import load_weights
from imgclf.data.transforms import Preprocess
from imgclf.engine.evaluation import predict_batches
from imgclf.engine.runtime import Runtime, configure_threads, resolve_runtime
from imgclf.errors import CheckpointError, ImgclfError
from imgclf.models.registry import create_model


@dataclass
class LoadedModel:
    model: nn.Module
    meta: dict[str, Any]
    runtime: Runtime
    mean: torch.Tensor       # (C,) on the device
    std: torch.Tensor        # (C,) on the device
    preprocess_fn: Preprocess | None
    run: RunDir | None = None

    classes = property(lambda self: list(self.meta["classes"]))
    img_size = property(lambda self: int(self.meta["img_size"]))
    channels = property(lambda self: int(self.meta["in_channels"]))
    preprocess = property(lambda self: str(self.meta.get("preprocess", "none")))
    data_root = property(lambda self: Path(self.meta["data"]) if self.meta.get("data") else None)
    device = property(lambda self: self.runtime.device)


def build_model(meta: dict[str, Any], state_dict: dict[str, torch.Tensor], path: Path) -> nn.Module:
    """Rebuild the architecture named in the metadata and load the weights strictly."""
    for key in ("model", "num_classes", "in_channels", "classes", "img_size", "mean", "std"):
        if key not in meta:
            raise CheckpointError(f"{path}: metadata lacks {key!r}; not an imgclf checkpoint")
    model = create_model(meta["model"], int(meta["num_classes"]), int(meta["in_channels"]))
    try:
        model.load_state_dict(state_dict, strict=True)
    except RuntimeError as err:
        raise CheckpointError(f"{path}: weights do not fit model {meta['model']} ({str(err).splitlines()[0]})") from None
    return model


def load_model_file(path: Path, device: str = "auto", precision: str = "auto") -> LoadedModel:
    configure_threads()
    state_dict, meta = load_weights(path)
    runtime = resolve_runtime(device, precision)
    model = build_model(meta, state_dict, path).to(runtime.device)
    if runtime.channels_last:
        model = model.to(memory_format=torch.channels_last)
    model.eval()
    mean = torch.tensor(meta["mean"], dtype=torch.float32, device=runtime.device)
    std = torch.tensor(meta["std"], dtype=torch.float32, device=runtime.device)
    preprocess = make_preprocess(str(meta.get("preprocess", "none")))
    return LoadedModel(model, meta, runtime, mean, std, preprocess)


def load_run_model(run_dir: Path, which: str = "best", device: str = "auto", precision: str = "auto") -> LoadedModel:
    """The run's ``best`` or ``last`` weights, ready to predict."""
    run = RunDir(Path(run_dir))
    run.require_trained()
    path = run.weights(which)
    if not path.is_file():
        raise ImgclfError(f"{path}: not found; the run has not saved {which} weights yet "
                          f"(finish it with: imgclf train --resume {run.root})")
    loaded = load_model_file(path, device, precision)
    loaded.run = run
    return loaded


def predict_probs(loaded: LoadedModel, images: torch.Tensor, batch_size: int = 256, tta_flip: bool = False) -> torch.Tensor:
    """(N, K) float32 CPU probabilities of uint8 images (N, C, S, S) at the run's size."""
    source = TensorSource(images, torch.zeros(images.shape[0], dtype=torch.long))
    probs, _ = predict_batches(loaded.model, source, loaded.runtime, loaded.mean, loaded.std, batch_size,
                               preprocess=loaded.preprocess_fn, tta_flip=tta_flip)
    return probs


def load_split(loaded: LoadedModel, data_root: Path | None, split: str) -> tuple[list[Path], torch.Tensor, torch.Tensor]:
    """(paths, targets (N,), uint8 images (N, C, S, S)) of a labelled split; undecodable files raise."""
    root = data_root or loaded.data_root
    if root is None:
        raise ImgclfError("no data folder: pass DATA")
    paths, targets, _ = list_split(Path(root), split, loaded.classes)
    images, ok, errors = load_images(paths, loaded.img_size, loaded.channels, desc=f"decoding {split}")
    if errors:
        listing = "; ".join(f"{p}: {r}" for p, r in errors[:5])
        raise ImgclfError(f"{len(errors)} file(s) in {root}/{split} cannot be decoded: {listing}")
    return paths, torch.tensor(targets, dtype=torch.long), images


def expand_paths(paths: Sequence[Path]) -> tuple[list[Path], list[tuple[Path, str]]]:
    """Files and folders -> image files (folders recursively); other entries reported."""
    files: list[Path] = []
    skipped: list[tuple[Path, str]] = []
    for path in map(Path, paths):
        if path.is_dir():
            files += list_images(path)
        elif path.is_file():
            (files.append(path) if is_image_name(path) else skipped.append((path, "not an image file name")))
        else:
            skipped.append((path, "not found"))
    return files, skipped


def load_image_files(loaded: LoadedModel, paths: Sequence[Path]) -> tuple[list[Path], torch.Tensor, list[tuple[Path, str]]]:
    """(decoded paths, uint8 images, [(path, reason)] for what could not be used)."""
    files, skipped = expand_paths(paths)
    images, ok, errors = load_images(files, loaded.img_size, loaded.channels)
    return [files[i] for i in ok], images, skipped + errors
