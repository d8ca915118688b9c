"""Config of ``imgclf train``: every default visible in one block."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from imgclf.config.fields import opt
from imgclf.config.shared import Device, Precision, device_opt, precision_opt, trust_model_code_opt


@dataclass(frozen=True)
class TrainConfig:
    """Train a classifier on DATA/train, evaluate on DATA/val, write a run folder."""

    @staticmethod
    def preset(given: Mapping[str, Any]) -> dict[str, Any]:
        """Defaults that depend on other options (see :func:`weights_preset`)."""
        return weights_preset(given)

    data: Path | None = opt(None, "prepared data: DATA/train/<class>/ and DATA/val/<class>/", positional=True)
    out: Path | None = opt(None, "run folder to create (default: a new runs/<model>-N)")
    resume: Path | None = opt(None, "continue the run in this folder exactly where it stopped")
    list_models: bool = opt(False, "print the model names and exit", switch=True)
    # model
    model: str = opt("auto", "auto = a FastNet sized to the data (fastnet_s/m/l, pooled stem for large images), "
                             "a torchvision name, small_cnn, timm/<name> (with the timm extra), or "
                             "package.module:ClassName (see --list-models)")
    pretrained: Path | None = opt(None, "load matching weights from this local file (safetensors, or a "
                                        "state_dict saved by torch); a head of another size stays fresh")
    weights: str = opt("none", "torchvision weights by name (DEFAULT, IMAGENET1K_V1...), downloaded into the "
                               "torch hub cache when missing (hash-checked); sets fine-tuning defaults for the "
                               "options not given: the weights' resolution and normalisation, lr/10, head lr 10x")
    offline: bool = opt(False, "never download (also IMGCLF_OFFLINE=1): --weights must be in the torch hub cache")
    freeze_backbone: bool = opt(False, "train only the classifier head")
    unfreeze_at: int = opt(0, "with --freeze-backbone: train everything from this epoch on (0 = never)", min=0)
    init: Literal["default", "kaiming_uniform", "kaiming_normal", "xavier_uniform", "xavier_normal"] = opt(
        "default", "weight initialisation of conv and linear layers")
    # data
    img_size: int = opt(0, "square training resolution in pixels; 0 = from the data (median side, 32..224; "
                            "with --model auto, halved over 48 px from 1,000 train images)")
    channels: Literal["rgb", "gray"] = opt("rgb", "feed the model RGB or one grey channel")
    normalize: Literal["auto", "imagenet", "half"] = opt(
        "auto", "auto = mean/std of the train split; imagenet; half = 0.5/0.5")
    crop_padding: int = opt(-1, "random-crop padding in pixels; -1 = img_size/8, 0 = no crop")
    hflip: bool = opt(False, "random horizontal flips in training (off by default: a mirrored digit, letter "
                             "or scan can change class; turn it on for photos)")
    preprocess: str = opt("none", "an enhancement applied before the model in training and prediction, "
                                  "e.g. histeq or gamma:g=0.5")
    cache: Literal["auto", "memory", "disk", "off"] = opt(
        "auto", "decoded images: memory = all in RAM, disk = read per batch from the decode cache file, "
                "off = decode every batch; auto = memory when they fit --cache-gb, else disk, else off. "
                "memory and disk keep the decoded images on disk, so the next run starts without decoding",
        resumable=True)
    cache_gb: float = opt(4.0, "memory budget for decoded images, GiB (auto never keeps more in RAM)", above=0,
                          resumable=True)
    cache_dir: Path | None = opt(None, "folder for decode caches (default: DATA/.imgclf-cache when DATA was "
                                       "written by imgclf prepare, else ~/.cache/imgclf)", resumable=True)
    workers: int = opt(-1, "decoding workers (threads; processes to build a cache of 2,048+ images and "
                            "to stream on CUDA); -1 = auto", min=-1, resumable=True)
    # optimisation
    epochs: int = opt(10, "passes over the train split", min=1, resumable=True)
    batch_size: int | Literal["auto"] = opt(
        "auto", "images per optimisation step (per process); auto = 64, or fewer for small data so that an "
                "epoch has at least 16 steps (never below 16)", min=1)
    optimizer: Literal["sgd", "adam", "adamw", "lbfgs"] = opt("sgd", "optimizer (lbfgs: one group, no weight decay)")
    lr: float | Literal["auto", "find"] = opt(
        "auto", "peak learning rate; auto = 0.05 x batch/64, lower for runs under 200 steps; find = run the "
                "learning-rate range test first and use its suggestion (see imgclf lr-find)", above=0)
    head_lr: float = opt(0.0, "peak learning rate of the classifier head (0 = --lr)", min=0)
    momentum: float = opt(0.9, "SGD momentum")
    nesterov: bool = opt(True, "Nesterov momentum for SGD")
    weight_decay: float = opt(5e-4, "L2 weight decay (decoupled for adamw)", min=0)
    scheduler: str = opt("cosine", "learning-rate schedule, or a chain like exponential,multistep; from: "
                                   "constant, step, multistep, exponential, cosine, onecycle, plateau")
    sched_args: tuple[str, ...] = opt((), "parameters per scheduler, e.g. exponential:gamma=0.9 "
                                          "'multistep:milestones=30|80,gamma=0.1' plateau:metric=val_loss,patience=2",
                                      metavar="NAME:KEY=V[,KEY=V]")
    warmup_steps: int | Literal["auto"] = opt(
        "auto", "linear warm-up from lr/10, in optimisation steps (one-cycle: its rise); auto = 5%% of the run, "
                "at least 10 steps, at most a quarter of the run", min=0)
    step_size: int = opt(30, "step: epochs between decays")
    milestones: tuple[int, ...] = opt((30, 80), "multistep: epochs at which to decay")
    gamma: float = opt(0.1, "step/multistep/exponential: decay factor")
    clip_grad: float = opt(0.0, "clip the gradient norm to this; 0 = off", min=0)
    ema: float = opt(0.99, "evaluate and save an exponential moving average of the weights with this decay "
                           "per step; 0 = off (the live weights)", min=0, below=1)
    bn_refresh: int = opt(512, "before each evaluation, measure the BatchNorm statistics afresh on this many "
                               "train images (without their lag, short runs evaluate right); 0 = off", min=0)
    progressive: float = opt(0.0, "progressive resizing: start training at this fraction of --img-size and "
                                  "grow to the full size by three quarters of the run; 0 = off", min=0, below=1)
    patience: int = opt(0, "early stopping: stop after N epochs without improvement (0 = off)", min=0)
    early_stop_metric: str = opt("", "val metric for early stopping, e.g. val_loss, val_acc, val_map "
                                     "(default: --best-metric)")
    # losses
    loss: Literal["ce", "bce"] = opt("ce", "ce = softmax cross-entropy; bce = one sigmoid logit (two classes)")
    label_smoothing: float = opt(0.1, "label smoothing epsilon: targets y*(1-eps) + eps/K", min=0, below=1)
    multi_label: bool = opt(False, "several labels per image (DATA/<split>/labels.csv; detected automatically)")
    threshold: float = opt(0.5, "multi-label: a label is predicted when its probability is at least this",
                           above=0, below=1)
    balance: Literal["none", "sampler", "loss"] = opt(
        "none", "class imbalance: sampler = class-balanced epoch order, loss = weights n/(K*n_c)")
    teacher: Path | None = opt(None, "distil from this run folder (its best weights, same classes)")
    kd_temperature: float = opt(4.0, "distillation temperature T", above=0)
    kd_alpha: float = opt(0.5, "weight of the distillation term (1 - alpha goes to the hard-label loss)",
                          min=0, max=1)
    # run control
    eval_every: int = opt(0, "also evaluate every N optimisation steps (0 = only at epoch ends)", min=0,
                          resumable=True)
    eval_batches: int = opt(0, "use only K val batches for the step evaluations (0 = all)", min=0,
                            resumable=True)
    save_every: int = opt(0, "also save last.* every N steps (0 = at epoch ends)", min=0, resumable=True)
    best_metric: Literal["val_acc", "val_loss"] = opt("val_acc", "which val metric picks checkpoints/best")
    seed: int = opt(0, "seed of weights, data order and augmentation")
    deterministic: bool = opt(False, "deterministic algorithms (slower); same seed, same numbers")
    device: Device = device_opt()
    precision: Precision = precision_opt()
    compile: bool | None = opt(None, "torch.compile the training step (--no-compile: never); default auto: only "
                                     "where compiling, measured on this machine, pays back within the run")
    nproc: int = opt(1, "processes on this machine (DDP through torchrun; one per GPU, gloo on CPU)", min=1,
                     resumable=True)
    force: bool = opt(False, "write into an existing --out folder", switch=True)
    trust_model_code: bool = trust_model_code_opt()

    def check(self) -> list[str]:
        """What the field declarations cannot say: combinations, and values with a special meaning."""
        problems: list[str] = []
        if self.preprocess not in ("", "none"):
            from imgclf.config.enhancements import parse_variant   # numpy + Pillow only
            from imgclf.errors import UsageError

            try:
                parse_variant(self.preprocess)
            except UsageError as err:
                problems.append(str(err))
        if self.data is None and self.resume is None and not self.list_models:
            problems.append("DATA is required (or --resume RUN, or --list-models)")
        if self.img_size != 0 and not 8 <= self.img_size <= 1024:
            problems.append(f"--img-size: must be 0 (auto) or 8..1024, got {self.img_size}")
        return problems + self.toolbox_problems()

    def toolbox_problems(self) -> list[str]:
        """Checks of the losses, optimizer, schedule and fine-tuning options."""
        from imgclf.config.schedules import check_chain

        problems = check_chain(self.scheduler, self.sched_args)
        if self.unfreeze_at and not self.freeze_backbone:
            problems.append("--unfreeze-at: only with --freeze-backbone")
        if self.pretrained is not None and self.weights != "none":
            problems.append("--pretrained and --weights: choose one source of weights")
        if self.early_stop_metric and not self.early_stop_metric.startswith("val_"):
            problems.append(f"--early-stop-metric: a logged val metric (val_loss, val_acc, ...), "
                            f"got {self.early_stop_metric!r}")
        if self.optimizer == "lbfgs" and (self.head_lr or self.unfreeze_at):
            problems.append("--optimizer lbfgs: takes a single parameter group; drop --head-lr and --unfreeze-at")
        if self.multi_label and (self.loss != "ce" or self.teacher is not None or self.balance == "sampler"):
            problems.append("--multi-label: uses its own BCE loss; not with --loss bce, --teacher or "
                            "--balance sampler (--balance loss weights the positives of each label)")
        if self.loss == "bce" and self.teacher is not None:
            problems.append("--teacher: distillation needs --loss ce (softmax outputs)")
        return problems


WEIGHTS_LR_FACTOR = 0.1     # a pretrained backbone fine-tunes at a tenth of the default peak lr...
WEIGHTS_HEAD_LR_FACTOR = 10.0   # ...and the fresh head at ten times the backbone's lr


def weights_preset(given: Mapping[str, Any]) -> dict[str, Any]:
    """Fine-tuning defaults that follow ``--weights NAME``, for the options the user did not set.

    ``given`` holds the values from flags and ``--config``; the result fills only the others
    (defaults < preset < file < flags): the architecture the weights belong to when ``--model`` is
    auto (resnet18), the weights' own eval resolution and normalisation, a lower learning rate
    (``WEIGHTS_LR_FACTOR`` x the recipe's base lr; ``--lr find`` keeps its range test) and a head
    learning rate ``WEIGHTS_HEAD_LR_FACTOR`` x that. Resuming keeps the run's own values.
    """
    if given.get("weights", "none") == "none" or given.get("resume") is not None:
        return {}
    from imgclf.models.pretrained import weights_recipe   # torchvision's weights API, only when asked
    from imgclf.training.recipe import BASE_LR, PRETRAINED_MODEL

    model = given.get("model", "auto")
    model = PRETRAINED_MODEL if model == "auto" else model   # weights belong to an architecture
    img_size, normalize, linear_head = weights_recipe(model, given["weights"])
    lr = given.get("lr", "auto")
    lr = BASE_LR * WEIGHTS_LR_FACTOR if lr == "auto" else lr
    preset: dict[str, Any] = {"model": model, "img_size": img_size, "lr": lr}
    if linear_head and lr != "find" and given.get("optimizer", "sgd") != "lbfgs":
        preset["head_lr"] = lr * WEIGHTS_HEAD_LR_FACTOR
    if normalize is not None:
        preset["normalize"] = normalize
    return {name: value for name, value in preset.items() if name not in given}


@dataclass(frozen=True)
class LrFindConfig(TrainConfig):
    """The learning-rate range test: train a copy of the model for a few hundred steps while the lr grows
    exponentially, plot the loss against the lr and suggest a peak lr. It takes the same options as
    imgclf train (the data, model, batch, optimizer and augmentation it measures), so the suggestion
    holds for that very command; the run-length and run-folder options are not used."""

    out: Path | None = opt(None, "the plot to write (PNG; default: lr_find.png here)")
    start_lr: float = opt(1e-5, "the ramp's first learning rate", above=0)
    end_lr: float = opt(10.0, "the ramp's last learning rate (the test stops earlier when the loss diverges)",
                        above=0)
    num_steps: int = opt(100, "optimisation steps of the ramp", min=5)

    def check(self) -> list[str]:
        problems = super().check()
        if self.resume is not None:
            problems.append("--resume: lr-find does not continue runs; give DATA")
        if self.end_lr <= self.start_lr:
            problems.append(f"--end-lr: must be above --start-lr ({self.start_lr:g}), got {self.end_lr:g}")
        return problems
