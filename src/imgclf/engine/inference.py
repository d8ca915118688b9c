"""Load a trained run and predict with exactly its eval preprocessing, in large batches."""

from __future__ import annotations

import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from imgclf.analysis.enhance import make_preprocess
from imgclf.analysis.saliency import CamSetup, resolve_layer
from imgclf.artifacts import RunDir
from imgclf.console import warn
from imgclf.data.folders import expand_paths, list_split
from imgclf.data.cache import CacheSpec, cached_rows
from imgclf.data.loading import GEOMETRY, load_images
from imgclf.data.multilabel import multi_hot, read_labels_csv
from imgclf.data.sources import TensorSource
from imgclf.engine.checkpoint import check_temperature, load_weights, read_temperature
from imgclf.data.transforms import Preprocess
from imgclf.engine.evaluation import predict_batches, predict_logits
from imgclf.engine.runtime import Runtime, configure_threads, resolve_runtime
from imgclf.errors import CheckpointError, ImgclfError
from imgclf.models.registry import Trust, check_trusted, create_model


@dataclass
class LoadedModel:
    model: nn.Module
    meta: dict[str, Any]
    runtime: Runtime
    mean: torch.Tensor       # (C,) on the device
    std: torch.Tensor        # (C,) on the device
    preprocess_fn: Preprocess | None
    run: RunDir | None = None
    source: Path | None = None       # the weights file
    which: str = "best"
    backend: str = "torch"           # requested: auto | torch | onnxruntime (see imgclf.deploy.backends)
    backend_ready: bool = True       # resolved on the first prediction, when the job's size is known
    engine: Any = None               # an onnxruntime classifier, or None for torch
    _sha256: str | None = None

    def source_sha256(self) -> str | None:
        """sha256 of the weights file (identifies the checkpoint an export was made from)."""
        if self._sha256 is None and self.source is not None:
            from imgclf.io import file_sha256

            self._sha256 = file_sha256(self.source)
        return self._sha256

    classes = property(lambda self: list(self.meta["classes"]))
    img_size = property(lambda self: int(self.meta["img_size"]))
    channels = property(lambda self: int(self.meta["in_channels"]))
    preprocess = property(lambda self: str(self.meta.get("preprocess", "none")))
    output = property(lambda self: str(self.meta.get("output", "softmax")))   # see imgclf.models.outputs
    multi_label = property(lambda self: self.output == "multilabel")
    threshold = property(lambda self: float(self.meta.get("threshold", 0.5)))   # multi-label decision
    temperature = property(lambda self: read_temperature(self.meta))   # imgclf calibrate; 1.0 if none
    data_root = property(lambda self: Path(self.meta["data"]) if self.meta.get("data") else None)
    device = property(lambda self: self.runtime.device)


def check_meta(meta: dict[str, Any], path: Path) -> None:
    """Every field predict relies on is present and has a sane type; CheckpointError naming the file if not."""
    for key in ("model", "num_classes", "in_channels", "classes", "img_size", "mean", "std"):
        if key not in meta:
            raise CheckpointError(f"{path}: metadata lacks {key!r}; not an imgclf checkpoint")
    problems = []
    if not isinstance(meta["model"], str) or not meta["model"]:
        problems.append("'model' is not a model name")
    for key, low, high in (("num_classes", 1, 1_000_000), ("num_outputs", 1, 1_000_000), ("in_channels", 1, 3),
                           ("img_size", 8, 4096)):
        value = meta.get(key, low)
        if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
            problems.append(f"{key!r} must be an integer in {low}..{high}, got {value!r}"[:120])
    classes = meta["classes"]
    if not isinstance(classes, list) or not all(isinstance(c, str) for c in classes):
        problems.append("'classes' is not a list of names")
    elif isinstance(meta["num_classes"], int) and len(classes) != meta["num_classes"]:
        problems.append(f"{len(classes)} class names for num_classes={meta['num_classes']}")
    for key in ("mean", "std"):
        values = meta[key]
        if (not isinstance(values, list) or len(values) != meta["in_channels"]
                or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
                           and (key == "mean" or v > 0) for v in values)):
            problems.append(f"{key!r} is not one finite number per input channel" + (" (> 0)" if key == "std" else ""))
    for key in ("preprocess", "output"):
        if not isinstance(meta.get(key, ""), str):
            problems.append(f"{key!r} is not a string")
    if (problem := check_temperature(meta)) is not None:
        problems.append(problem)
    if problems:
        raise CheckpointError(f"{path}: metadata is not usable ({'; '.join(problems)})")


def check_model_spec(spec: str, path: Path, trust: Trust = False) -> None:
    """Refuse model names from a checkpoint that would run arbitrary code to build the model.

    A user model is ``package.module:ClassName``: building it imports that module and calls the
    class. A checkpoint someone sent you could name anything importable (``os:system``, a
    module with side effects on import), so the standard library is refused outright, any
    other module needs the user's consent (``trust``: ``--trust-model-code``), and
    :func:`imgclf.models.registry.import_model_class` accepts only a torch ``nn.Module`` class.
    """
    if ":" not in spec:
        return
    module_name, _, class_name = spec.partition(":")
    top = module_name.split(".")[0]
    if not module_name or not class_name.isidentifier() or top in sys.stdlib_module_names or top == "builtins":
        raise CheckpointError(f"{path}: refusing model {spec!r} named in the checkpoint metadata (not an imgclf "
                              "model nor a user nn.Module class; building it would run other code)")
    check_trusted(spec, trust, str(path))


def build_model(meta: dict[str, Any], state_dict: dict[str, torch.Tensor], path: Path,
                trust: Trust = False) -> nn.Module:
    """Rebuild the architecture named in the metadata and load the weights strictly."""
    check_meta(meta, path)
    check_model_spec(meta["model"], path, trust)
    num_outputs = int(meta.get("num_outputs", meta["num_classes"]))   # 1 for a single-logit (bce) model
    try:
        model = create_model(meta["model"], num_outputs, int(meta["in_channels"]))
    except ImgclfError as err:
        raise CheckpointError(f"{path}: cannot build model {meta['model']!r} ({err})") from None
    try:
        model.load_state_dict(state_dict, strict=True)
    except RuntimeError as err:
        raise CheckpointError(f"{path}: weights do not fit model {meta['model']} ({str(err).splitlines()[0]})") from None
    return model


def fuse_for_inference(model: nn.Module) -> nn.Module:
    """Fold BatchNorm into the preceding conv (18% faster resnet18 inference on a 2-core CPU).

    A model that torch.fx cannot trace (data-dependent control flow, ...) is returned unchanged,
    with a warning: its predictions are the same, only slower.
    In place: copying the model first took longer than the inference of a small job (tracing fails
    before anything is changed).
    """
    from torch.fx.experimental.optimization import fuse

    try:
        return fuse(model.eval(), inplace=True)
    except Exception as err:  # noqa: BLE001 - torch.fx raises many kinds of errors while tracing
        reason = (str(err).strip().splitlines() or [""])[0][:160]
        warn(f"BatchNorm was not folded into the convolutions ({type(err).__name__}: {reason}); "
             "predicting with the unfused model (same results, slower)")
        return model


def load_model_file(path: Path, device: str = "auto", precision: str = "auto", fused: bool = True,
                    trust_model_code: Trust = False) -> LoadedModel:
    """Weights + metadata -> a model ready to predict (``fused=False`` keeps the module structure).

    ``trust_model_code`` allows a ``package.module:Class`` model named in the file to be imported.
    """
    configure_threads()
    state_dict, meta = load_weights(path)
    runtime = resolve_runtime(device, precision)
    model = build_model(meta, state_dict, path, trust_model_code).to(runtime.device).eval()
    if fused:
        model = fuse_for_inference(model)
    if runtime.channels_last:
        model = model.to(memory_format=torch.channels_last)
    model.eval()
    mean = torch.tensor(meta["mean"], dtype=torch.float32, device=runtime.device)
    std = torch.tensor(meta["std"], dtype=torch.float32, device=runtime.device)
    try:
        preprocess = make_preprocess(str(meta.get("preprocess", "none")))
    except ImgclfError as err:
        raise CheckpointError(f"{path}: its preprocessing cannot be rebuilt ({err})") from None
    return LoadedModel(model, meta, runtime, mean, std, preprocess, source=Path(path))


def load_run_model(run_dir: Path, which: str = "best", device: str = "auto", precision: str = "auto",
                   fused: bool = True, trust_model_code: Trust = False, backend: str = "torch") -> LoadedModel:
    """The run's ``best`` or ``last`` weights, ready to predict (``backend``: see imgclf.deploy.backends)."""
    run = RunDir(Path(run_dir))
    run.require_trained()
    path = run.weights(which)
    if not path.is_file():
        raise ImgclfError(f"{path}: not found; the run has not saved {which} weights yet "
                          f"(finish it with: imgclf train --resume {run.root})")
    loaded = load_model_file(path, device, precision, fused, trust_model_code)
    loaded.run, loaded.which = run, which
    loaded.backend, loaded.backend_ready = backend, backend == "torch"
    return loaded


def load_cam_setup(run_dir: Path, which: str = "best", device: str = "auto", layer: str = "auto",
                   trust_model_code: Trust = False) -> tuple[LoadedModel, CamSetup]:
    """The run's weights unfused in fp32 (module names as ``imgclf inspect`` shows them) and the Grad-CAM layer."""
    loaded = load_run_model(run_dir, which, device, "fp32", fused=False, trust_model_code=trust_model_code)
    sample = torch.zeros(1, loaded.channels, loaded.img_size, loaded.img_size, device=loaded.device)
    name = resolve_layer(loaded.model, layer, sample)
    return loaded, CamSetup(loaded.model, name, loaded.device, loaded.mean, loaded.std, loaded.preprocess_fn,
                            loaded.output)


def predict_probs(loaded: LoadedModel, images: torch.Tensor, batch_size: int = 256, tta_flip: bool = False) -> torch.Tensor:
    """(N, K) float32 CPU probabilities of uint8 images (N, C, S, S) at the run's size, on the chosen backend
    (divided by the run's calibration temperature, if it has one)."""
    if not loaded.backend_ready:
        from imgclf.deploy.backends import choose_backend

        choose_backend(loaded, images, batch_size)
    if loaded.engine is not None:
        array = loaded.engine.predict_probs(images.numpy(), batch_size, tta_flip, loaded.preprocess_fn)
        return torch.from_numpy(array)
    return torch_probs(loaded, images, batch_size, tta_flip)


def torch_probs(loaded: LoadedModel, images: torch.Tensor, batch_size: int = 256, tta_flip: bool = False) -> torch.Tensor:
    """The torch backend: the model in eager mode through the same batching as training's evaluation."""
    source = TensorSource(images, torch.zeros(images.shape[0], dtype=torch.long))
    probs, _ = predict_batches(loaded.model, source, loaded.runtime, loaded.mean, loaded.std, batch_size,
                               preprocess=loaded.preprocess_fn, tta_flip=tta_flip, output=loaded.output,
                               temperature=loaded.temperature)
    return probs


def data_folder(loaded: LoadedModel, data_root: Path | None) -> Path:
    """The resolved data folder: DATA when given, else the one the run was trained on."""
    root = data_root or loaded.data_root
    if root is None:
        raise ImgclfError("no data folder: pass DATA")
    return Path(root).resolve()


def predict_raw_logits(loaded: LoadedModel, images: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    """(N, num_outputs) float32 CPU logits before any temperature (what calibration fits on)."""
    source = TensorSource(images, torch.zeros(images.shape[0], dtype=torch.long))
    logits, _ = predict_logits(loaded.model, source, loaded.runtime, loaded.mean, loaded.std, batch_size,
                               preprocess=loaded.preprocess_fn)
    return logits


def load_split(loaded: LoadedModel, data_root: Path | None, split: str) -> tuple[list[Path], torch.Tensor, torch.Tensor]:
    """(paths, targets (N,), uint8 images (N, C, S, S)) of a labelled split; undecodable files raise."""
    root = data_root or loaded.data_root
    if root is None:
        raise ImgclfError("no data folder: pass DATA")
    paths, targets, _ = list_split(Path(root), split, loaded.classes)
    images = cached_split(loaded, Path(root), split, paths)
    if images is None:
        images = decode_labelled(loaded, paths, f"{root}/{split}")
    return paths, torch.tensor(targets, dtype=torch.long), images


def cached_split(loaded: LoadedModel, root: Path, split: str, paths: Sequence[Path]) -> torch.Tensor | None:
    """The split's images from the decode cache a training run on this data left at the model's size and
    channels (the same decode as :func:`decode_labelled`, verified), or None: then they are decoded."""
    spec = CacheSpec(split, tuple(paths), root, loaded.img_size, loaded.channels, "none", GEOMETRY)
    rows = cached_rows(spec)
    return torch.from_numpy(rows) if rows is not None else None


def load_multilabel_split(loaded: LoadedModel, data_root: Path | None, split: str
                          ) -> tuple[list[Path], np.ndarray, torch.Tensor]:
    """(paths, multi-hot targets (N, K), uint8 images (N, C, S, S)) of ``DATA/<split>/labels.csv``."""
    root = data_root or loaded.data_root
    if root is None:
        raise ImgclfError("no data folder: pass DATA")
    paths, labels = read_labels_csv(Path(root) / split)
    images = decode_labelled(loaded, paths, f"{root}/{split}")
    return paths, multi_hot(labels, loaded.classes).numpy(), images


def decode_labelled(loaded: LoadedModel, paths: Sequence[Path], where: str) -> torch.Tensor:
    """uint8 images of a labelled split; any undecodable file is an error (metrics need every image)."""
    images, _, errors = load_images(paths, loaded.img_size, loaded.channels, desc=f"decoding {where}")
    if errors:
        listing = "; ".join(f"{p}: {r}" for p, r in errors[:5])
        raise ImgclfError(f"{len(errors)} file(s) in {where} cannot be decoded: {listing}")
    return images


def load_image_files(loaded: LoadedModel, paths: Sequence[Path]) -> tuple[list[Path], torch.Tensor, list[tuple[Path, str]]]:
    """(decoded paths, uint8 images, [(path, reason)] for what could not be used)."""
    files, skipped = expand_paths(paths)
    images, ok, errors = load_images(files, loaded.img_size, loaded.channels)
    return [files[i] for i in ok], images, skipped + errors
