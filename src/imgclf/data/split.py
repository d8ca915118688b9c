"""Deduplicate by pixel hash, group near-duplicates, then split each class with its own seeded shuffle.

Why this order: an image that appears twice must land in one split only, or
validation would measure memory instead of generalisation. The same holds for a
resized or re-encoded copy: near-duplicate groups (close perceptual hashes, see
:mod:`imgclf.data.neardup`) are split as one unit. Splitting sorts before
shuffling, so the result depends on the seed and the file names, never on the
order the file system lists them.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class Item:
    """A decoded input: its key (e.g. a source path), pixel digest, label set and perceptual hash."""

    key: str
    digest: str
    labels: tuple[str, ...]
    phash: str = ""


@dataclass
class Dedup:
    """Items kept once; duplicates as (key, key kept); conflicts as (key, reason)."""

    kept: list[Item] = field(default_factory=list)
    duplicates: list[tuple[str, str]] = field(default_factory=list)
    conflicts: list[tuple[str, str]] = field(default_factory=list)


def deduplicate(items: Sequence[Item]) -> Dedup:
    """Keep the first (by key) of identical images; drop every copy whose labels disagree."""
    by_digest: dict[str, list[Item]] = {}
    for item in sorted(items, key=lambda i: i.key):
        by_digest.setdefault(item.digest, []).append(item)
    out = Dedup()
    for group in by_digest.values():
        label_sets = {item.labels for item in group}
        if len(label_sets) > 1:
            for item in group:
                others = sorted({"/".join(o.labels) for o in group if o.labels != item.labels})
                out.conflicts.append((item.key, f"label conflict: the same pixels are also labelled "
                                                f"{', '.join(others)} (e.g. {_first_other(group, item)})"))
            continue
        out.kept.append(group[0])
        out.duplicates += [(item.key, group[0].key) for item in group[1:]]
    out.kept.sort(key=lambda i: i.key)
    return out


def near_duplicates(items: Sequence[Item], radius: int) -> list[list[Item]]:
    """Groups of kept items whose perceptual hashes are linked by chains of pairs within ``radius`` bits."""
    from imgclf.data.neardup import near_duplicate_groups

    ordered = sorted(items, key=lambda i: i.key)
    return [[ordered[i] for i in group] for group in near_duplicate_groups([i.phash for i in ordered], radius)]


def split_together(groups: Mapping[str, Sequence[str]], together: Sequence[Sequence[str]], val: float, test: float,
                   seed: int) -> tuple[dict[str, str], list[str]]:
    """:func:`split_samples`, with each key set in ``together`` going wherever its first key goes.

    Only the first key of a set takes part in the stratified split of its group, so a set counts
    once; with no sets this is exactly :func:`split_samples`.
    """
    followers = {key: keys[0] for keys in together for key in keys[1:]}
    leaders = {name: [k for k in keys if k not in followers] for name, keys in groups.items()}
    assignment, too_small = split_samples({n: k for n, k in leaders.items() if k}, val, test, seed)
    for key, leader in followers.items():
        assignment[key] = assignment[leader]
    return assignment, too_small


def _first_other(group: list[Item], item: Item) -> str:
    return next(o.key for o in group if o.labels != item.labels)


def split_counts(n: int, val: float, test: float) -> tuple[int, int, int]:
    """(train, val, test) sizes for a class of n: rounded targets, at least one of each when possible."""
    n_val = round(n * val)
    n_test = round(n * test)
    if val > 0 and n_val == 0 and n >= 2:
        n_val = 1
    if test > 0 and n_test == 0 and n >= 3:
        n_test = 1
    while n_val + n_test >= n and n_val + n_test > 0:  # keep at least one training image
        if n_test >= n_val and n_test > 0:
            n_test -= 1
        else:
            n_val -= 1
    return n - n_val - n_test, n_val, n_test


def split_samples(groups: Mapping[str, Sequence[str]], val: float, test: float,
                  seed: int) -> tuple[dict[str, str], list[str]]:
    """Assign every key of every group (class) to train/val/test, stratified per group.

    Each group is sorted, then shuffled with a generator seeded by ``seed`` and the
    group's name, so adding a class never reshuffles another. Returns the
    assignment and the names of groups too small to reach every requested split
    (they keep what they can, train first).
    """
    assignment: dict[str, str] = {}
    too_small: list[str] = []
    for name in sorted(groups):
        keys = sorted(groups[name])
        random.Random(f"{seed}:{name}").shuffle(keys)
        n_train, n_val, n_test = split_counts(len(keys), val, test)
        if (val > 0 and n_val == 0) or (test > 0 and n_test == 0):
            too_small.append(name)
        for key in keys[:n_val]:
            assignment[key] = "val"
        for key in keys[n_val:n_val + n_test]:
            assignment[key] = "test"
        for key in keys[n_val + n_test:]:
            assignment[key] = "train"
    return assignment, too_small
