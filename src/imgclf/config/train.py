"""Config of ``imgclf train``: every default visible in one block."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from imgclf.config.fields import opt

Device = Literal["auto", "cpu", "cuda"]
Precision = Literal["auto", "fp32", "bf16", "fp16"]


@dataclass(frozen=True)
class TrainConfig:
    """Train a classifier on DATA/train, evaluate on DATA/val, write a run folder."""

    data: Path | None = opt(None, "prepared data: DATA/train/<class>/ and DATA/val/<class>/", positional=True)
    out: Path | None = opt(None, "run folder to create (default: a new runs/<model>-N)")
    resume: Path | None = opt(None, "continue the run in this folder exactly where it stopped")
    list_models: bool = opt(False, "print the model names and exit", switch=True)
    # model
    model: str = opt("resnet18", "torchvision model name, 'small_cnn', or package.module:ClassName")
    pretrained: Path | None = opt(None, "load matching weights from this local file (safetensors, or a "
                                        "state_dict saved by torch); a head of another size stays fresh")
    weights: str = opt("none", "torchvision weights by name (DEFAULT, IMAGENET1K_V1...), only from the local "
                               "torch hub cache: nothing is downloaded")
    freeze_backbone: bool = opt(False, "train only the classifier head")
    unfreeze_at: int = opt(0, "with --freeze-backbone: train everything from this epoch on (0 = never)")
    init: Literal["default", "kaiming_uniform", "kaiming_normal", "xavier_uniform", "xavier_normal"] = opt(
        "default", "weight initialisation of conv and linear layers")
    # data
    img_size: int = opt(0, "square training resolution in pixels; 0 = from the data (median side, 32..224)")
    channels: Literal["rgb", "gray"] = opt("rgb", "feed the model RGB or one grey channel")
    normalize: Literal["auto", "imagenet", "half"] = opt(
        "auto", "auto = mean/std of the train split; imagenet; half = 0.5/0.5")
    crop_padding: int = opt(-1, "random-crop padding in pixels; -1 = img_size/8, 0 = no crop")
    hflip: bool = opt(False, "random horizontal flips in training (off by default: a mirrored digit, letter "
                             "or scan can change class; turn it on for photos)")
    preprocess: str = opt("none", "an enhancement applied before the model in training and prediction, "
                                  "e.g. histeq or gamma:g=0.5")
    cache: Literal["auto", "memory", "off"] = opt(
        "auto", "keep decoded images in memory as uint8 (auto: when they fit --cache-gb)")
    cache_gb: float = opt(4.0, "memory budget for the decoded-image cache, GiB")
    workers: int = opt(-1, "loader processes when not cached; -1 = auto")
    # optimisation
    epochs: int = opt(5, "passes over the train split")
    batch_size: int = opt(64, "images per optimisation step")
    optimizer: Literal["sgd", "adam", "adamw", "lbfgs"] = opt("sgd", "optimizer (lbfgs: one group, no weight decay)")
    lr: float = opt(0.05, "peak learning rate")
    head_lr: float = opt(0.0, "peak learning rate of the classifier head (0 = --lr)")
    momentum: float = opt(0.9, "SGD momentum")
    nesterov: bool = opt(True, "Nesterov momentum for SGD")
    weight_decay: float = opt(5e-4, "L2 weight decay (decoupled for adamw)")
    scheduler: str = opt("cosine", "learning-rate schedule, or a chain like exponential,multistep; from: "
                                   "constant, step, multistep, exponential, cosine, onecycle, plateau")
    sched_args: tuple[str, ...] = opt((), "parameters per scheduler, e.g. exponential:gamma=0.9 "
                                          "'multistep:milestones=30|80,gamma=0.1' plateau:metric=val_loss,patience=2",
                                      metavar="NAME:KEY=V[,KEY=V]")
    warmup_epochs: float = opt(1.0, "linear warm-up from lr/10, in epochs (one-cycle: its rise)")
    step_size: int = opt(30, "step: epochs between decays")
    milestones: tuple[int, ...] = opt((30, 80), "multistep: epochs at which to decay")
    gamma: float = opt(0.1, "step/multistep/exponential: decay factor")
    clip_grad: float = opt(0.0, "clip the gradient norm to this; 0 = off")
    patience: int = opt(0, "early stopping: stop after N epochs without improvement (0 = off)")
    early_stop_metric: str = opt("", "val metric for early stopping, e.g. val_loss, val_acc, val_map "
                                     "(default: --best-metric)")
    # losses
    loss: Literal["ce", "bce"] = opt("ce", "ce = softmax cross-entropy; bce = one sigmoid logit (two classes)")
    label_smoothing: float = opt(0.1, "label smoothing epsilon: targets y*(1-eps) + eps/K")
    multi_label: bool = opt(False, "several labels per image (DATA/<split>/labels.csv; detected automatically)")
    threshold: float = opt(0.5, "multi-label: a label is predicted when its probability is at least this")
    balance: Literal["none", "sampler", "loss"] = opt(
        "none", "class imbalance: sampler = class-balanced epoch order, loss = weights n/(K*n_c)")
    teacher: Path | None = opt(None, "distil from this run folder (its best weights, same classes)")
    kd_temperature: float = opt(4.0, "distillation temperature T")
    kd_alpha: float = opt(0.5, "weight of the distillation term (1 - alpha goes to the hard-label loss)")
    # run control
    eval_every: int = opt(0, "also evaluate every N optimisation steps (0 = only at epoch ends)")
    eval_batches: int = opt(0, "use only K val batches for the step evaluations (0 = all)")
    save_every: int = opt(0, "also save last.* every N steps (0 = at epoch ends)")
    best_metric: Literal["val_acc", "val_loss"] = opt("val_acc", "which val metric picks checkpoints/best")
    seed: int = opt(0, "seed of weights, data order and augmentation")
    deterministic: bool = opt(False, "deterministic algorithms (slower); same seed, same numbers")
    device: Device = opt("auto", "auto = cuda when available, else cpu")
    precision: Precision = opt("auto", "auto = bf16 autocast where the hardware is fast at it (CUDA, AMX CPUs), else fp32")
    compile: bool = opt(False, "torch.compile the model")
    nproc: int = opt(1, "processes on this machine (DDP through torchrun; one per GPU, gloo on CPU)")
    force: bool = opt(False, "write into an existing --out folder", switch=True)

    def check(self) -> list[str]:
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
        for flag, value in (("--epochs", self.epochs), ("--batch-size", self.batch_size)):
            if value < 1:
                problems.append(f"{flag}: must be at least 1, got {value}")
        if self.img_size != 0 and not 8 <= self.img_size <= 1024:
            problems.append(f"--img-size: must be 0 (auto) or 8..1024, got {self.img_size}")
        if self.lr <= 0:
            problems.append(f"--lr: must be positive, got {self.lr}")
        if not 0.0 <= self.label_smoothing < 1.0:
            problems.append(f"--label-smoothing: must be in [0, 1), got {self.label_smoothing}")
        for flag, value in (("--eval-every", self.eval_every), ("--eval-batches", self.eval_batches),
                            ("--save-every", self.save_every), ("--clip-grad", self.clip_grad),
                            ("--warmup-epochs", self.warmup_epochs), ("--weight-decay", self.weight_decay)):
            if value < 0:
                problems.append(f"{flag}: must be 0 or more, got {value}")
        if self.nproc < 1:
            problems.append(f"--nproc: must be at least 1, got {self.nproc}")
        if self.cache_gb <= 0:
            problems.append("--cache-gb: must be positive")
        return problems + self.toolbox_problems()

    def toolbox_problems(self) -> list[str]:
        """Checks of the losses, optimizer, schedule and fine-tuning options."""
        from imgclf.config.schedules import check_chain

        problems = check_chain(self.scheduler, self.sched_args)
        for flag, value in (("--head-lr", self.head_lr), ("--unfreeze-at", self.unfreeze_at),
                            ("--patience", self.patience)):
            if value < 0:
                problems.append(f"{flag}: must be 0 or more, got {value}")
        if self.kd_temperature <= 0:
            problems.append(f"--kd-temperature: must be positive, got {self.kd_temperature}")
        if not 0.0 <= self.kd_alpha <= 1.0:
            problems.append(f"--kd-alpha: must be in [0, 1], got {self.kd_alpha}")
        if not 0.0 < self.threshold < 1.0:
            problems.append(f"--threshold: must be in (0, 1), got {self.threshold}")
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
