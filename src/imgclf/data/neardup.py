"""Near-duplicate images: a 64-bit perceptual hash, and groups of images whose hashes are close.

The hash is the DCT pHash: the grey image resized to 32 x 32, its 2-D DCT, the 8 x 8 lowest
frequencies, one bit per coefficient: above their median or not. Resizing, re-encoding and a
small change of brightness or contrast barely move the low frequencies, so a copy lands within a
few bits of its original. Half of the bits are ones (the median splits them), so the distance
between two hashes is even. Measured on skimage's photographs and scikit-learn's digits (copies
resized 0.5-2x, JPEG quality 60-95, brightness +-10%): 99.7% of the copies of images with any
detail were within 4 bits, all within 6; but at 6 bits 21% of the distinct digits already had a
neighbour, and chains of such neighbours made groups of 70 images. The default radius is 4 bits
(``--near-distance``). Nearly flat images (a plain background) have no low frequencies to speak
of and their hash is noise: their copies are found less reliably.

Finding every pair within radius r among N hashes is not done pairwise: the 64 bits are cut into
r + 1 bands, and two hashes within r bits agree exactly on at least one band (pigeonhole). Only
hashes sharing a band value are compared, bucket by bucket and vectorised.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image

from imgclf.data.decode import to_uint8_array

HASH_SIDE = 32          # the grey thumbnail the DCT is taken of
LOW_SIDE = 8            # 8 x 8 lowest frequencies = 64 bits
BLOCK_ELEMENTS = 1 << 22   # hash pairs compared per numpy step (32 MiB of uint64)
SMALL_BUCKET = 32          # buckets up to this size are compared all at once, larger ones one by one


def _dct_matrix(n: int) -> np.ndarray:
    """(n, n) orthonormal DCT-II matrix: coefficients = M @ x @ M.T."""
    k = np.arange(n)
    m = np.sqrt(2.0 / n) * np.cos(np.pi * (2 * k[None, :] + 1) * k[:, None] / (2 * n))
    m[0] /= np.sqrt(2.0)
    return m


DCT = _dct_matrix(HASH_SIDE)


def perceptual_hash(img: Image.Image) -> str:
    """The 64-bit DCT pHash of a decoded image (mode L, RGB or I;16), as 16 hex digits."""
    grey = img.convert("L") if img.mode in ("L", "RGB") else Image.fromarray(to_uint8_array(img, 1)[:, :, 0])
    thumb = grey.resize((HASH_SIDE, HASH_SIDE), Image.Resampling.LANCZOS, reducing_gap=2.0)
    coefficients = DCT @ np.asarray(thumb, dtype=np.float64) @ DCT.T        # (32, 32)
    low = coefficients[:LOW_SIDE, :LOW_SIDE].ravel()                       # (64,)
    bits = low > np.median(low)
    return f"{int(np.packbits(bits).view('>u8')[0]):016x}"


def popcount_bytes(values: np.ndarray) -> np.ndarray:
    """Set bits of each uint64, byte by byte (numpy < 2 has no bitwise_count)."""
    as_bytes = np.ascontiguousarray(values, dtype="<u8").view(np.uint8).reshape(*np.shape(values), 8)
    return np.unpackbits(as_bytes, axis=-1).sum(axis=-1, dtype=np.uint8)


popcount = getattr(np, "bitwise_count", popcount_bytes)


def _bands(radius: int) -> list[tuple[int, int]]:
    """(shift, width) of radius + 1 bands covering the 64 bits."""
    count = min(radius + 1, 64)
    widths = [64 // count + (1 if i < 64 % count else 0) for i in range(count)]
    shifts = np.cumsum([0] + widths[:-1])
    return [(int(s), w) for s, w in zip(shifts, widths)]


def _pairs_in_bucket(members: np.ndarray, hashes: np.ndarray, radius: int) -> list[np.ndarray]:
    """(P, 2) pairs i < j (positions in ``hashes``) among ``members`` within ``radius`` bits."""
    found = []
    rows = max(1, BLOCK_ELEMENTS // len(members))
    for start in range(0, len(members) - 1, rows):
        block = members[start:start + rows]
        rest = members[start + 1:]
        near = popcount(hashes[block][:, None] ^ hashes[rest][None, :]) <= radius   # (b, len(rest))
        a, b = np.nonzero(near)
        keep = b >= a   # rest[b] comes after block[a]: each pair once
        if keep.any():
            found.append(np.stack([block[a[keep]], rest[b[keep]]], axis=1))
    return found


def _pairs_in_small_buckets(order: np.ndarray, keys: np.ndarray, small: np.ndarray, hashes: np.ndarray,
                            radius: int, largest: int) -> list[np.ndarray]:
    """Pairs within buckets of at most ``largest`` members, all buckets at once: ``order`` sorts ``keys``,
    ``small`` marks the sorted positions in such buckets; position p is compared with p + 1 .. p + largest - 1."""
    found = []
    for offset in range(1, largest):
        first = np.flatnonzero(small[:-offset] & (keys[order[:-offset]] == keys[order[offset:]]))
        if not first.size:
            break
        i, j = order[first], order[first + offset]
        near = popcount(hashes[i] ^ hashes[j]) <= radius
        found.append(np.stack([i[near], j[near]], axis=1))
    return found


def near_pairs(hashes: np.ndarray, radius: int) -> np.ndarray:
    """(P, 2) sorted unique index pairs (i < j) of uint64 ``hashes`` at Hamming distance <= ``radius``."""
    hashes = np.asarray(hashes, dtype=np.uint64)
    found: list[np.ndarray] = [np.zeros((0, 2), dtype=np.int64)]
    for shift, width in _bands(radius):
        keys = (hashes >> np.uint64(shift)) & np.uint64((1 << width) - 1)
        order = np.argsort(keys, kind="stable")
        starts = np.flatnonzero(np.r_[True, np.diff(keys[order]) != 0])
        sizes = np.diff(np.r_[starts, len(order)])
        small = np.repeat(sizes <= SMALL_BUCKET, sizes)
        found += _pairs_in_small_buckets(order, keys, small, hashes, radius, SMALL_BUCKET)
        for start, size in zip(starts[sizes > SMALL_BUCKET], sizes[sizes > SMALL_BUCKET]):
            found += _pairs_in_bucket(np.sort(order[start:start + size]), hashes, radius)
    pairs = np.concatenate(found).astype(np.int64)
    pairs.sort(axis=1)
    return np.unique(pairs, axis=0)


def component_labels(num_items: int, pairs: np.ndarray) -> np.ndarray:
    """(num_items,) the smallest index in each item's connected component of the graph with edges ``pairs``."""
    labels = np.arange(num_items)
    a, b = pairs[:, 0], pairs[:, 1]
    while True:   # propagate the smallest label along the edges, then jump pointers, until stable
        low = np.minimum(labels[a], labels[b])
        updated = labels.copy()
        np.minimum.at(updated, a, low)
        np.minimum.at(updated, b, low)
        updated = updated[updated]
        if np.array_equal(updated, labels):
            return labels
        labels = updated


def near_duplicate_groups(hashes: Sequence[str], radius: int) -> list[list[int]]:
    """Groups of >= 2 indices into ``hashes`` (hex pHashes) linked by chains of pairs within ``radius`` bits.

    Equal hashes are compared once. Each group is sorted; groups are ordered by their first index.
    """
    values = np.array([int(h, 16) for h in hashes], dtype=np.uint64)
    unique, inverse = np.unique(values, return_inverse=True)
    labels = component_labels(len(unique), near_pairs(unique, radius))[inverse.ravel()]
    groups: dict[int, list[int]] = {}
    for index, label in enumerate(labels.tolist()):
        groups.setdefault(label, []).append(index)
    return sorted((g for g in groups.values() if len(g) > 1), key=lambda g: g[0])


def hash_distance(a: str, b: str) -> int:
    return (int(a, 16) ^ int(b, 16)).bit_count()
