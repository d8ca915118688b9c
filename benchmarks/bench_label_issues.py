"""label-issues fold training: one process with all threads vs one process per core; near-duplicate search at scale.

    .venv/bin/python benchmarks/bench_label_issues.py            # prints JSON
    .venv/bin/python benchmarks/bench_label_issues.py --quick

Fold training: the real ``imgclf.training.folds.out_of_fold_probs`` on the prepared digits' train
split (small_cnn, 32 px), ``jobs=1`` (one process, every core's thread) and ``jobs=cores`` (one
process per core, one thread each), side by side in this process, alternating, median of the
repeats. Near-duplicates: ``near_pairs`` and the whole ``near_duplicate_groups`` (what prepare
calls) at radius 4 on 100,000 uniformly random hashes and on 100,000 clustered ones (the pHashes
of the 1,797 real digits, each copied with up to 2 random bits flipped: large buckets, many true
pairs, one giant group).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import digits_data, machine  # noqa: E402


def time_folds(epochs: int, folds: int, repeats: int) -> dict[str, object]:
    import torch

    from imgclf.data.folders import list_split
    from imgclf.data.loading import load_images
    from imgclf.data.transforms import channel_stats
    from imgclf.training.folds import FoldTraining, assign_folds, available_cores, out_of_fold_probs

    paths, targets, classes = list_split(digits_data(), "train")
    images, _, _ = load_images(paths, 32, 3)
    mean, std = channel_stats(images)
    spec = FoldTraining("small_cnn", len(classes), epochs, 64, 0.05, 0.9, True, 5e-4, 0.1, 1.0, 4, False,
                        tuple(mean), tuple(std), device="cpu", precision="fp32")
    labels = torch.tensor(targets)
    assignment = assign_folds(np.asarray(targets), folds, 0)
    cores = available_cores()
    times: dict[int, list[float]] = {1: [], cores: []}
    for _ in range(repeats):
        for jobs in (1, cores) if _ % 2 == 0 else (cores, 1):
            torch.set_num_threads(cores)
            started = time.perf_counter()
            out_of_fold_probs(spec, images, labels, assignment, jobs)
            times[jobs].append(time.perf_counter() - started)
    median = {jobs: statistics.median(t) for jobs, t in times.items()}
    return {"images": len(paths), "folds": folds, "epochs": epochs, "cores": cores,
            "seconds": {f"jobs={j}": round(m, 1) for j, m in median.items()},
            "speedup_processes_over_threads": round(median[1] / median[cores], 2)}


def time_pairs(n: int) -> dict[str, object]:
    from sklearn.datasets import load_digits
    from PIL import Image

    from imgclf.data.neardup import near_duplicate_groups, near_pairs, perceptual_hash

    rng = np.random.default_rng(0)
    uniform = rng.integers(0, 2**63, n, dtype=np.int64).astype(np.uint64) << np.uint64(1)
    digits = load_digits().images
    base = np.array([int(perceptual_hash(Image.fromarray((d * 15.9).astype(np.uint8))), 16) for d in digits],
                    dtype=np.uint64)
    clustered = base[rng.integers(0, len(base), n)]
    for _ in range(2):
        flip = rng.random(n) < 0.5
        clustered[flip] ^= np.uint64(1) << rng.integers(0, 64, int(flip.sum())).astype(np.uint64)
    out = {}
    for name, hashes in (("uniform", uniform), ("clustered digits", clustered)):
        started = time.perf_counter()
        pairs = near_pairs(np.unique(hashes), 4)
        pairs_s = time.perf_counter() - started
        started = time.perf_counter()
        groups = near_duplicate_groups([f"{h:016x}" for h in hashes.tolist()], 4)
        out[name] = {"distinct_hashes": int(len(np.unique(hashes))), "pairs_of_distinct": int(len(pairs)),
                     "near_pairs_s": round(pairs_s, 2), "groups": len(groups),
                     "near_duplicate_groups_s": round(time.perf_counter() - started, 2)}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 folds, 1 epoch, 1 repeat, 10,000 hashes")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    if args.quick:
        args.folds, args.epochs, args.repeats = 2, 1, 1
    result = {"machine": machine(), "load_average_at_start": os.getloadavg()[0],
              "near_pairs": time_pairs(10_000 if args.quick else 100_000),
              "folds": time_folds(args.epochs, args.folds, args.repeats)}
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
