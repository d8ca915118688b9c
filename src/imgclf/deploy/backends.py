"""``--backend auto|torch|onnxruntime``: which engine runs a run's model for predict/evaluate/mistakes/enhance.

Every backend receives the same uint8 batches from the same decoding (``data.loading``); only the
forward pass differs. ``onnxruntime`` runs the checkpoint's ONNX export, written once into
``RUN/export/onnx-<best|last>/`` (parity-checked on the images at hand) and reused while the
checkpoint is unchanged. ``auto`` times both on this machine once per (CPU, versions, model,
input size, batch size), caches the verdict in ``~/.cache/imgclf/backends.json`` and says what it
picked and why. An int8 export (``imgclf export RUN --int8``) that stayed within 1 point of
accuracy joins the race, and is named loudly when it wins. Small jobs without an export stay on
torch: exporting costs more than it saves there.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from imgclf.console import status, warn
from imgclf.deploy.export_folder import prepare_images, write_export
from imgclf.deploy.sidecar import is_export_dir, read_export
from imgclf.engine.inference import LoadedModel
from imgclf.errors import ImgclfError
from imgclf.machine import cache_dir, describe_cpu, read_verdicts, remember_verdict

AUTO_EXPORT_MIN_IMAGES = 1000   # below this, auto does not export a checkpoint just to time it
PROBE_REPEATS = 3               # timed batches per candidate (after one warm-up)
PARITY_IMAGES = 64              # images of the job used for the export's parity check


CACHE = "backends"               # the verdicts: $XDG_CACHE_HOME/imgclf/backends.json (imgclf.machine)


def probe_key(loaded: LoadedModel, batch_size: int) -> str:
    """One verdict per machine, library versions, architecture, input shape and batch size."""
    import onnxruntime

    return (f"{describe_cpu()} | torch {torch.__version__} | onnxruntime {onnxruntime.__version__} | "
            f"{loaded.meta['model']} {loaded.channels}x{loaded.img_size} | batch {batch_size} | {loaded.device.type}")


@dataclass
class Candidate:
    name: str            # torch | onnxruntime | onnxruntime-int8
    engine: Any          # None for torch, else an OnnxClassifier


def onnxruntime_available() -> bool:
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


def current_export(loaded: LoadedModel, int8: bool = False) -> Path | None:
    """The run's ONNX export of this very checkpoint, if there is one (int8: only one within the limit)."""
    if loaded.run is None or loaded.source is None:
        return None
    folder = loaded.run.export_dir("onnx", loaded.which, int8)
    if not is_export_dir(folder):
        return None
    try:
        info = read_export(folder)
    except ImgclfError:
        return None
    if info.extra.get("source", {}).get("weights_sha256") != loaded.source_sha256():
        return None
    if int8 and not info.extra.get("int8", {}).get("within_limit", False):
        return None
    return folder


def export_for_backend(loaded: LoadedModel, images: torch.Tensor) -> Path:
    """Export the checkpoint to RUN/export/onnx-<which>/ (parity-checked on a sample of ``images``)."""
    if loaded.run is None or loaded.source is None:
        raise ImgclfError("--backend onnxruntime needs a run folder (or pass an export folder to predict)")
    folder = loaded.run.export_dir("onnx", loaded.which)
    step = max(1, len(images) // PARITY_IMAGES)
    sample = prepare_images(loaded, images[::step][:PARITY_IMAGES])
    status(f"exporting {loaded.source.name} to ONNX for onnxruntime (once per checkpoint): {folder}")
    write_export(loaded, "onnx", folder, sample, source_of(loaded), replace=True)
    return folder


def source_of(loaded: LoadedModel) -> dict[str, Any]:
    return {"run": str(loaded.run.root) if loaded.run else None, "checkpoint": loaded.which,
            "weights_file": str(loaded.source) if loaded.source else None,
            "weights_sha256": loaded.source_sha256(), "step": loaded.meta.get("step")}


def onnx_engine(folder: Path, loaded: LoadedModel) -> Any:
    from imgclf.deploy.onnx_model import OnnxClassifier

    info = read_export(folder)
    return OnnxClassifier(info.model_path, info.output, info.temperature, loaded.device.type)


def time_candidate(loaded: LoadedModel, candidate: Candidate, batch: torch.Tensor) -> float:
    """Median images/s of one batch through the candidate (after one warm-up pass)."""
    from imgclf.engine.inference import torch_probs

    def once() -> None:
        if candidate.engine is None:
            torch_probs(loaded, batch, len(batch))
        else:
            candidate.engine.predict_probs(batch.numpy(), len(batch))
    once()
    times = []
    for _ in range(PROBE_REPEATS):
        start = time.perf_counter()
        once()
        times.append(time.perf_counter() - start)
    return len(batch) / float(np.median(times))


def race(loaded: LoadedModel, candidates: list[Candidate], batch: torch.Tensor) -> dict[str, Any]:
    speeds = {c.name: round(time_candidate(loaded, c, batch), 1) for c in candidates}
    return {"choice": max(speeds, key=speeds.__getitem__), "images_per_s": speeds,
            "measured": time.strftime("%Y-%m-%d %H:%M:%S")}


def choose_backend(loaded: LoadedModel, images: torch.Tensor, batch_size: int) -> None:
    """Resolve ``loaded.backend`` for a job on ``images``: sets ``loaded.engine`` (None = torch)."""
    loaded.backend_ready = True
    if loaded.backend == "torch":
        return
    if loaded.backend == "onnxruntime":
        if not onnxruntime_available():
            raise ImgclfError("--backend onnxruntime: onnxruntime is not installed; pip install 'imgclf[infer]'")
        loaded.engine = onnx_engine(current_export(loaded) or export_for_backend(loaded, images), loaded)
        status("backend: onnxruntime (as requested)")
        return
    if not onnxruntime_available():
        status("backend auto: torch (onnxruntime is not installed: pip install 'imgclf[infer]')")
        return
    _choose_auto(loaded, images, batch_size)


def _choose_auto(loaded: LoadedModel, images: torch.Tensor, batch_size: int) -> None:
    key = probe_key(loaded, batch_size)
    verdict, reason = read_verdicts(CACHE).get(key), f"measured earlier, cached in {cache_dir() / CACHE}.json"
    fp32, int8 = current_export(loaded), current_export(loaded, int8=True)
    stale = verdict is None or (int8 is not None and "onnxruntime-int8" not in verdict.get("images_per_s", {}))
    big = len(images) >= AUTO_EXPORT_MIN_IMAGES
    if stale and fp32 is None and not big:
        status(f"backend auto: torch (no ONNX export of this checkpoint yet; {len(images)} images do not pay for one)")
        return
    if (stale or verdict.get("choice") != "torch") and fp32 is None:
        try:
            fp32 = export_for_backend(loaded, images)
        except ImgclfError as err:   # a property of this run (read-only folder, odd model), not of the machine
            warn(f"backend auto: torch, because the ONNX export failed ({err})")
            return
    if stale:
        batch = images[:batch_size] if len(images) >= batch_size else images.repeat(
            -(-batch_size // max(1, len(images))), 1, 1, 1)[:batch_size]
        candidates = [Candidate("torch", None), Candidate("onnxruntime", onnx_engine(fp32, loaded))]
        if int8 is not None:
            candidates.append(Candidate("onnxruntime-int8", onnx_engine(int8, loaded)))
        verdict, reason = race(loaded, candidates, batch), "measured now"
        remember_verdict(CACHE, key, verdict)
    measured = verdict.get("images_per_s", {})
    usable = {name: speed for name, speed in measured.items() if name != "onnxruntime-int8" or int8}
    choice = max(usable, key=usable.__getitem__) if usable else "torch"
    speeds = ", ".join(f"{name} {speed} img/s" for name, speed in measured.items())
    if choice != "torch":
        loaded.engine = onnx_engine(int8 if choice == "onnxruntime-int8" else fp32, loaded)
    if choice == "onnxruntime-int8":
        acc = read_export(int8).extra.get("int8", {})   # type: ignore[arg-type]
        warn(f"backend auto: onnxruntime-int8, an INT8 model: val accuracy {acc.get('val_accuracy_int8')} vs fp32 "
             f"{acc.get('val_accuracy_fp32')}; probabilities differ from fp32 ({speeds}; {reason})")
    else:
        status(f"backend auto: {choice} ({speeds}; {reason})")

