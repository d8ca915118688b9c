"""``imgclf lr-find DATA``: the learning-rate range test with exactly the pieces ``imgclf train`` would use."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path

from imgclf.analysis.enhance import make_preprocess
from imgclf.commands.train.setup import (RangeTestSpec, build_model, fit_settings, load_data, resolve_recipe,
                                         run_range_test, weights_meta)
from imgclf.config import LrFindConfig, command_line
from imgclf.console import print_table, status
from imgclf.data.multilabel import resolve_multi_label
from imgclf.data.transforms import normalization
from imgclf.engine.distributed import SINGLE
from imgclf.engine.runtime import configure_threads, resolve_device, seed_everything
from imgclf.errors import ImgclfError
from imgclf.io import refuse_overwrite
from imgclf.models.outputs import num_model_outputs
from imgclf.reporting.plots import plot_lr_range
from imgclf.training.losses import resolve_output
from imgclf.training.lr_find import RangeTest

DEFAULT_PLOT = Path("lr_find.png")


@dataclass
class LrFindResult:
    suggested_lr: float
    recipe_lr: float            # what --lr auto would use for this run
    test: RangeTest
    plot: Path
    exit_code: int = 0


def run(cfg: LrFindConfig) -> LrFindResult:
    plot = cfg.out or DEFAULT_PLOT
    refuse_overwrite(plot, cfg.force)
    configure_threads(int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
    seed_everything(cfg.seed, cfg.deterministic)
    multi_label = resolve_multi_label(cfg.data, cfg.multi_label)
    preprocess = make_preprocess(cfg.preprocess)
    data = load_data(cfg, multi_label, pin=resolve_device(cfg.device).type == "cuda", preprocess=preprocess)
    if data.preprocessed:
        preprocess = None   # applied once to the decoded images
    mean, std = normalization(cfg.normalize, data.channels, data.mean, data.std)
    output = resolve_output(cfg.loss, multi_label, data.classes)
    auto_lr = dataclasses.replace(cfg, lr="auto", compile=False)   # the ramp runs the model itself
    recipe, runtime = resolve_recipe(auto_lr, data, num_model_outputs(output, len(data.classes)), SINGLE)
    run_cfg = recipe.apply(cfg)
    meta = weights_meta(run_cfg, data, mean, std, output)
    model = build_model(run_cfg, data, runtime, int(meta["num_outputs"]))
    settings = fit_settings(run_cfg, data, runtime, mean, std, meta, preprocess, 1)
    status(f"range test: {run_cfg.model} on {data.train.num_images} images at {data.img_size}px, batch "
           f"{run_cfg.batch_size}, {cfg.num_steps} steps from lr {cfg.start_lr:g} to {cfg.end_lr:g}")
    test = run_range_test(run_cfg, data, runtime, model, settings, SINGLE,
                          RangeTestSpec(cfg.start_lr, cfg.end_lr, cfg.num_steps))
    if len(test.lrs) < 3:
        raise ImgclfError(f"the loss diverged after {len(test.lrs)} step(s), at lr {test.lrs[-1]:g}: "
                          "lower --start-lr")
    plot_lr_range(test.lrs, test.losses, test.curve, test.suggestions(), plot)
    _print_result(cfg, test, recipe.lr, plot)
    return LrFindResult(test.valley, recipe.lr, test, plot)


def _print_result(cfg: LrFindConfig, test: RangeTest, recipe_lr: float, plot: Path) -> None:
    ended = (f"stopped at lr {test.lrs[-1]:.3g}: the loss diverged" if test.stopped_early
             else f"ran to lr {test.lrs[-1]:.3g}")
    status(f"{len(test.lrs)} steps, {ended}")
    rows = [[name, f"{lr:.4g}"] for name, lr in test.suggestions().items()]
    rows.append(["recipe (--lr auto)", f"{recipe_lr:.4g}"])
    print_table(["suggestion", "lr"], rows)
    train = dataclasses.replace(cfg, lr=float(f"{test.valley:.3g}"))
    print(f"suggested lr {test.valley:.3g} (valley); to train with it: "
          f"{command_line('imgclf train', _as_train(train))}")
    print(f"plot: {plot}")


def _as_train(cfg: LrFindConfig) -> object:
    """The same options as a TrainConfig (for the command line to print)."""
    from imgclf.config import TrainConfig

    names = {f.name for f in dataclasses.fields(TrainConfig)}
    return TrainConfig(**{f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg) if f.name in names
                          and f.name not in ("out", "force")})
