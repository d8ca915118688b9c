"""The classic hand-written PyTorch loop, as in the tutorials: the baseline imgclf is measured against.

ImageFolder + per-image PIL transforms + DataLoader(num_workers=0) + torchvision resnet18
(weights=None) + SGD + CrossEntropy, fp32, default memory layout, ``model.eval()`` and
``torch.no_grad()`` for evaluation. Nothing here is tuned: that is the point.

    python benchmarks/plain_loop.py --data DATA --img-size 112 --epochs 3 --no-hflip

prints one JSON object. Steady-state train images/s excludes epoch 1 when there are two or
more epochs (its first batches pay one-time allocation costs), else the first
``--warmup-batches`` batches of epoch 1.
"""

from __future__ import annotations

import time

STARTED = time.perf_counter()          # before importing torch: the script's own wall time

import argparse  # noqa: E402
import json  # noqa: E402
from dataclasses import asdict, dataclass, field  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import torch  # noqa: E402
import torchvision  # noqa: E402
from torch.utils.data import DataLoader  # noqa: E402
from torchvision import transforms as T  # noqa: E402

MEAN, STD = (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)   # the tutorials' fixed normalisation


@dataclass
class EpochStats:
    epoch: int
    train_s: float            # the whole epoch's training loop, decode + transforms included
    train_images: int
    steady_s: float           # the part counted in steady-state throughput
    steady_images: int
    eval_s: float
    val_images: int
    val_acc: float
    val_loss: float
    done_at: float            # time.time() when this epoch's evaluation finished


@dataclass
class PlainResult:
    img_size: int
    batch_size: int
    lr: float
    momentum: float
    seed: int
    hflip: bool
    threads: int
    epochs: list[EpochStats] = field(default_factory=list)
    train_img_per_s: float | None = None     # steady state (see steady_rule)
    steady_rule: str = ""
    eval_img_per_s: float | None = None      # median over epochs
    final_val_acc: float | None = None
    script_s: float | None = None            # from the first line of this script to the end


def make_transforms(img_size: int, hflip: bool, mean: tuple[float, ...] = MEAN,
                    std: tuple[float, ...] = STD) -> tuple[T.Compose, T.Compose]:
    """(train, eval) per-image PIL transforms."""
    train = [T.Resize(img_size), T.RandomCrop(img_size, padding=img_size // 8)]
    if hflip:
        train.append(T.RandomHorizontalFlip())
    train += [T.ToTensor(), T.Normalize(mean, std)]
    val = [T.Resize(img_size), T.CenterCrop(img_size), T.ToTensor(), T.Normalize(mean, std)]
    return T.Compose(train), T.Compose(val)


def make_loaders(data: Path, img_size: int, batch_size: int, hflip: bool) -> tuple[DataLoader, DataLoader]:
    train_tf, val_tf = make_transforms(img_size, hflip)
    train_set = torchvision.datasets.ImageFolder(str(data / "train"), transform=train_tf)
    val_set = torchvision.datasets.ImageFolder(str(data / "val"), transform=val_tf)
    return (DataLoader(train_set, batch_size=batch_size, shuffle=True, num_workers=0),
            DataLoader(val_set, batch_size=batch_size, shuffle=False, num_workers=0))


def train_epoch(model: torch.nn.Module, loader: DataLoader, optimizer: torch.optim.Optimizer,
                loss_fn: torch.nn.Module, skip_batches: int) -> tuple[float, int, float, int]:
    """(epoch seconds, images, seconds after the first skip_batches, images after them)."""
    model.train()
    start = time.perf_counter()
    steady_start, steady_images, images = start, 0, 0
    for i, (inputs, labels) in enumerate(loader):
        optimizer.zero_grad()
        loss = loss_fn(model(inputs), labels)
        loss.backward()
        optimizer.step()
        images += len(labels)
        if i + 1 == skip_batches:
            steady_start = time.perf_counter()
        elif i + 1 > skip_batches:
            steady_images += len(labels)
    end = time.perf_counter()
    return end - start, images, end - steady_start, steady_images


def evaluate(model: torch.nn.Module, loader: DataLoader, loss_fn: torch.nn.Module) -> tuple[float, int, float, float]:
    """(seconds, images, accuracy, mean loss) over the whole loader."""
    model.eval()
    start = time.perf_counter()
    correct, total, loss_sum = 0, 0, 0.0
    with torch.no_grad():
        for inputs, labels in loader:
            outputs = model(inputs)
            loss_sum += float(loss_fn(outputs, labels)) * len(labels)
            correct += int((outputs.argmax(1) == labels).sum())
            total += len(labels)
    return time.perf_counter() - start, total, correct / max(total, 1), loss_sum / max(total, 1)


def run_plain(data: Path, img_size: int = 112, epochs: int = 3, batch_size: int = 64, lr: float = 0.01,
              momentum: float = 0.9, seed: int = 0, hflip: bool = True, warmup_batches: int = 3) -> PlainResult:
    torch.manual_seed(seed)
    train_loader, val_loader = make_loaders(data, img_size, batch_size, hflip)
    model = torchvision.models.resnet18(weights=None, num_classes=len(train_loader.dataset.classes))
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum)
    loss_fn = torch.nn.CrossEntropyLoss()
    result = PlainResult(img_size, batch_size, lr, momentum, seed, hflip, torch.get_num_threads())
    for epoch in range(1, epochs + 1):
        skip = warmup_batches if epochs == 1 else 0
        train_s, images, steady_s, steady_images = train_epoch(model, train_loader, optimizer, loss_fn, skip)
        eval_s, val_images, acc, loss = evaluate(model, val_loader, loss_fn)
        result.epochs.append(EpochStats(epoch, round(train_s, 3), images, round(steady_s, 3), steady_images,
                                        round(eval_s, 3), val_images, round(acc, 5), round(loss, 5), time.time()))
    counted = result.epochs[1:] if epochs >= 2 else result.epochs
    steady_s = sum(e.steady_s for e in counted)
    result.train_img_per_s = round(sum(e.steady_images for e in counted) / steady_s, 1) if steady_s else None
    result.steady_rule = "epochs 2.. (epoch 1 excluded)" if epochs >= 2 else f"epoch 1 after {warmup_batches} batches"
    rates = sorted(e.val_images / e.eval_s for e in result.epochs if e.eval_s > 0)
    result.eval_img_per_s = round(rates[len(rates) // 2], 1) if rates else None
    result.final_val_acc = result.epochs[-1].val_acc
    result.script_s = round(time.perf_counter() - STARTED, 3)
    return result


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="DATA with DATA/train and DATA/val class folders")
    parser.add_argument("--img-size", type=int, default=112)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=0.01)
    parser.add_argument("--momentum", type=float, default=0.9)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-hflip", action="store_true", help="no random horizontal flip (digits)")
    parser.add_argument("--warmup-batches", type=int, default=3, help="excluded from throughput when --epochs 1")
    args = parser.parse_args(argv)
    result = run_plain(args.data, args.img_size, args.epochs, args.batch_size, args.lr, args.momentum,
                       args.seed, not args.no_hflip, args.warmup_batches)
    out = asdict(result)
    print(json.dumps(out, indent=1))
    return out


if __name__ == "__main__":
    main()
