"""Which precision and memory layout is fastest for resnet18 on this CPU?

Trains (forward + backward + SGD step) and runs inference on synthetic tensors in fp32 and in
bf16 autocast, each with and without channels_last, interleaved in one process so that every
configuration sees the same machine state. Prints the median images/s of each.

    .venv/bin/python benchmarks/bench_precision.py --img-size 112 --repeats 6
"""

from __future__ import annotations

import argparse
import json
import time

import torch
import torchvision

CONFIGS = {"fp32": (False, False), "fp32+channels_last": (False, True),
           "bf16": (True, False), "bf16+channels_last": (True, True)}


def train_step(model: torch.nn.Module, opt: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor,
               amp: bool) -> None:
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp):
        out = model(x)
    loss = torch.nn.functional.cross_entropy(out.float(), y)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--img-size", type=int, default=112)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=6)
    args = parser.parse_args()
    torch.manual_seed(0)
    y = torch.randint(0, 10, (args.batch_size,))
    setups = {}
    for name, (amp, cl) in CONFIGS.items():
        model = torchvision.models.resnet18(num_classes=10)
        model = model.to(memory_format=torch.channels_last) if cl else model
        x = torch.randn(args.batch_size, 3, args.img_size, args.img_size)
        x = x.contiguous(memory_format=torch.channels_last) if cl else x
        setups[name] = (model, torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9), x, amp)
        train_step(model, setups[name][1], x, y, amp)   # warm-up
    times: dict[str, list[float]] = {name: [] for name in CONFIGS}
    for _ in range(args.repeats):
        for name, (model, opt, x, amp) in setups.items():
            start = time.perf_counter()
            train_step(model, opt, x, y, amp)
            times[name].append(time.perf_counter() - start)
    result = {"img_size": args.img_size, "batch_size": args.batch_size, "threads": torch.get_num_threads(),
              "train_img_per_s": {}, "inference_img_per_s": {}}
    for name, (model, _, x, amp) in setups.items():
        result["train_img_per_s"][name] = round(args.batch_size / sorted(times[name])[len(times[name]) // 2], 1)
        model.eval()
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp):
            model(x)
            start = time.perf_counter()
            for _ in range(3):
                model(x)
        result["inference_img_per_s"][name] = round(3 * args.batch_size / (time.perf_counter() - start), 1)
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
