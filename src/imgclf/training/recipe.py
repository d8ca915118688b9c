"""What ``auto`` means in ``imgclf train``: the resolution, the model, the learning rate and the warm-up.

Each rule is a plain function of facts about the run (image size, number of images, batch
size, run length), so it is the same on every machine and a resumed run re-derives nothing:
the resolved values are recorded in config.json (``derived.recipe``). The constants were chosen
by measuring time to accuracy on several data sets of different size and character
(BENCHMARKS.md, "Choosing the defaults"); change them only with a new measurement.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

# --model auto -----------------------------------------------------------------------------
PRETRAINED_MODEL = "resnet18"  # with --weights/--pretrained: the architecture pretrained weights exist for
SMALL_DATA = 20_000          # fewer train images than this: the smallest network (measured: on 6,400 and
                             # 8,160 images fastnet_s was ahead of fastnet_m at every second of a 5-epoch run)
LARGE_DATA = 200_000         # this many or more: the widest (wider nets need more data and steps to pay back)
SIZE_PER_STEM_STRIDE = 48    # above this many px, the stem strides 2 (4 above twice that...)

# --img-size auto (with --model auto) ---------------------------------------------------------------
HALVE_ABOVE = 48             # data over this many px trains at half its size (measured on the two photo sets:
                             # the same or better accuracy in about half the time of the full size's pooled stem)
HALVE_MIN_IMAGES = 1_000     # ... when there are this many train images: a smaller set trains in seconds at full
                             # size and needs every pixel (tiny, 160 images: 80.8% at 64 px, 76.7% at 32, 3 seeds)

# --batch-size auto ---------------------------------------------------------------------------
MAX_BATCH = 64               # images per step: fast on a CPU, and the reference of the lr rule
MIN_BATCH = 16
MIN_STEPS_PER_EPOCH = 16     # small data: smaller batches, so that an epoch still has this many steps

# --lr auto ------------------------------------------------------------------------------------
BASE_LR = 0.05               # SGD + Nesterov peak lr at REFERENCE_BATCH (fastnet and torchvision nets)
REFERENCE_BATCH = 64
SHORT_RUN_STEPS = 200        # runs shorter than this use a proportionally lower lr ...
MIN_LR_FACTOR = 0.25         # ... but never below this share of the base lr

# --warmup-steps auto ---------------------------------------------------------------------------
WARMUP_SHARE = 0.05          # of the run's steps ...
MIN_WARMUP_STEPS = 10        # ... at least this many ...
MAX_WARMUP_SHARE = 0.25      # ... and never more than this share of a (short) run


@dataclass(frozen=True)
class RunFacts:
    """What the rules look at: known once the data is listed."""

    img_size: int              # training resolution, px
    num_train: int             # train images
    global_batch: int          # images per optimisation step over all processes
    total_steps: int           # optimisation steps of the whole run


def recipe_img_size(native: int, num_train: int) -> int:
    """The training resolution for ``num_train`` images whose own size (``auto_img_size``) is ``native``
    px: over HALVE_ABOVE px and with at least HALVE_MIN_IMAGES images, half of it (an antialiased
    downscale; the stem pools what is left)."""
    return native // 2 if native > HALVE_ABOVE and num_train >= HALVE_MIN_IMAGES else native


def choose_model(img_size: int, num_train: int) -> str:
    """A FastNet width by data size, with the stem stride that keeps the work near a 32-48 px input."""
    width = "s" if num_train < SMALL_DATA else "m" if num_train < LARGE_DATA else "l"
    stride = 1
    while img_size > SIZE_PER_STEM_STRIDE * stride and stride < 8:
        stride *= 2
    return f"fastnet_{width}" if stride == 1 else f"fastnet_{width}_s{stride}"


def recipe_batch_size(num_train: int, world_size: int = 1) -> int:
    """Per-process batch: MAX_BATCH, halved while an epoch would have fewer than MIN_STEPS_PER_EPOCH steps."""
    batch = MAX_BATCH
    while batch > MIN_BATCH and num_train // (batch * world_size) < MIN_STEPS_PER_EPOCH:
        batch //= 2
    return batch


def recipe_lr(facts: RunFacts) -> float:
    """The peak lr: linear in the batch size, lowered for very short runs (few steps to recover in)."""
    short = min(1.0, max(MIN_LR_FACTOR, facts.total_steps / SHORT_RUN_STEPS))
    return BASE_LR * facts.global_batch / REFERENCE_BATCH * short


def recipe_warmup_steps(total_steps: int) -> int:
    """A share of the run with a floor in steps, capped for short runs."""
    steps = max(MIN_WARMUP_STEPS, math.ceil(WARMUP_SHARE * total_steps))
    return min(steps, math.floor(MAX_WARMUP_SHARE * total_steps))
