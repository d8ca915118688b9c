"""``imgclf calibrate``: fit a temperature on held-out logits and store it in the checkpoint.

The temperature goes under one metadata key (:data:`imgclf.engine.checkpoint.TEMPERATURE_KEY`)
of the weights file, read back by :func:`imgclf.engine.checkpoint.read_temperature`; predict,
evaluate, mistakes, enhance and export then divide the logits by it. ``calibration.json`` in the
run folder holds one record per calibrated checkpoint (``{"best": {...}, "last": {...}}``): where
the temperature was fitted and the numbers before and after.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from imgclf.analysis.calibration import (T_BOUNDS, TemperatureFit, calibration_summary, fit_temperature,
                                         multilabel_calibration_summary)
from imgclf.artifacts import RunDir
from imgclf.config import CalibrateConfig
from imgclf.console import status, warn
from imgclf.engine.checkpoint import TEMPERATURE_KEY, update_metadata
from imgclf.engine.inference import (LoadedModel, data_folder, load_multilabel_split, load_run_model, load_split,
                                     predict_raw_logits)
from imgclf.errors import ImgclfError
from imgclf.io import read_json, single_writer, write_json
from imgclf.models.outputs import logits_to_probs

SCORES = ("ece", "nll", "brier")


@dataclass
class CalibrateResult:
    temperature: float
    before: dict[str, float] = field(default_factory=dict)   # ece, nll, brier at T = 1 on the fit split
    after: dict[str, float] = field(default_factory=dict)    # the same at the fitted T
    exit_code: int = 0


def _scores(loaded: LoadedModel, logits: torch.Tensor, targets: torch.Tensor, temperature: float) -> dict[str, float]:
    probs = logits_to_probs(logits, loaded.output, temperature).double().numpy()
    summarise = multilabel_calibration_summary if loaded.multi_label else calibration_summary
    summary = summarise(targets.numpy(), probs, temperature)
    return {key: float(summary[key]) for key in SCORES}


def _held_out(loaded: LoadedModel, cfg: CalibrateConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """(raw logits (N, num_outputs), targets (N,) or (N, K)) of the fit split."""
    if loaded.multi_label:
        paths, targets_np, images = load_multilabel_split(loaded, cfg.data, cfg.split)
        targets = torch.from_numpy(np.asarray(targets_np, dtype=np.float32))
    else:
        paths, targets, images = load_split(loaded, cfg.data, cfg.split)
    if not paths:
        raise ImgclfError(f"the {cfg.split} split has no images to fit a temperature on")
    return predict_raw_logits(loaded, images, cfg.batch_size), targets


def run(cfg: CalibrateConfig) -> CalibrateResult:
    run_dir = RunDir(cfg.run)
    run_dir.require_trained()
    with single_writer(run_dir.lock, str(run_dir.root)):   # train must not replace the weights meanwhile
        return _calibrate(cfg, run_dir)


def _calibrate(cfg: CalibrateConfig, run_dir: RunDir) -> CalibrateResult:
    loaded = load_run_model(run_dir.root, cfg.checkpoint, cfg.device, cfg.precision,
                            trust_model_code=cfg.trust_model_code)
    weights = run_dir.weights(cfg.checkpoint)
    if cfg.reset:
        update_metadata(weights, {TEMPERATURE_KEY: None})
        _store_record(run_dir, cfg.checkpoint, None)
        status(f"removed the temperature from {weights}; probabilities are uncalibrated again")
        return CalibrateResult(1.0)
    if cfg.split == "train":
        warn("fitting on the train split: the model is over-confident there by construction, so the temperature "
             "will be too low; use val or a split kept apart for calibration")
    logits, targets = _held_out(loaded, cfg)
    fit = fit_temperature(logits, targets, loaded.output)
    before, after = _scores(loaded, logits, targets, 1.0), _scores(loaded, logits, targets, fit.temperature)
    update_metadata(weights, {TEMPERATURE_KEY: fit.temperature})
    _store_record(run_dir, cfg.checkpoint, _record(cfg, loaded, fit, before, after, len(targets)))
    _print(cfg, fit, before, after, len(targets))
    status(f"stored temperature {fit.temperature:.4g} in {weights} (metadata key {TEMPERATURE_KEY!r}); predict and "
           f"evaluate use it from now on. Refresh the numbers with: imgclf evaluate {run_dir.root}")
    return CalibrateResult(fit.temperature, before, after)


def _store_record(run: RunDir, checkpoint: str, record: dict[str, Any] | None) -> None:
    """Set (or with None remove) the checkpoint's entry of calibration.json; the file goes when it is empty."""
    records = read_json(run.calibration_json) if run.calibration_json.is_file() else {}
    records = {k: v for k, v in records.items() if k != checkpoint} if isinstance(records, dict) else {}
    if record is not None:
        records[checkpoint] = record
    if records:
        write_json(run.calibration_json, dict(sorted(records.items())))
    else:
        run.calibration_json.unlink(missing_ok=True)


def _record(cfg: CalibrateConfig, loaded: LoadedModel, fit: TemperatureFit, before: dict[str, float],
            after: dict[str, float], num_images: int) -> dict[str, Any]:
    """calibration.json: the fitted temperature, where it came from, the fit split's numbers before and after."""
    return {"temperature": fit.temperature, "checkpoint": cfg.checkpoint, "step": loaded.meta.get("step"),
            "split": cfg.split, "data": str(data_folder(loaded, cfg.data)), "num_images": num_images,
            "output": loaded.output, "method": "temperature scaling: logits / T, T minimises the NLL",
            "bounds": list(T_BOUNDS), "at_bound": fit.at_bound, "before": before, "after": after}


def _print(cfg: CalibrateConfig, fit: TemperatureFit, before: dict[str, float], after: dict[str, float],
           num_images: int) -> None:
    print(f"temperature {fit.temperature:.4f} fitted on {cfg.split} ({num_images} images): "
          + ", ".join(f"{key.upper() if key != 'brier' else 'Brier'} {before[key]:.4f} -> {after[key]:.4f}"
                      for key in SCORES))
    if fit.at_bound:
        warn(f"the best temperature lies at the edge of the search range {T_BOUNDS}: the {cfg.split} split gives "
             "little to fit on (too few images, or no mistakes); check it with imgclf evaluate on another split")
