"""``imgclf prepare SRC DST``: verify, deduplicate and split raw images, never touching SRC."""

from __future__ import annotations

import os
import shutil
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from imgclf import __version__
from imgclf.config import PrepareConfig
from imgclf.console import print_table, status, warn
from imgclf.data.discover import Discovery, detect_layout, discover, find_csv
from imgclf.data.prepare import (MULTI_LABEL_DIR, REPORT_NAME, REPORT_TOOL, Prepared, build_dataset,
                                 check_destination, install_output, lock_path, make_workspace)
from imgclf.errors import ImgclfError
from imgclf.io import single_writer, write_csv, write_json

MANIFEST_COLUMNS = ("source", "destination", "sha256", "class", "split", "width", "height")
SPLIT_NAMES = ("train", "val", "test")


@dataclass
class Result:
    dst: Path
    layout: str
    totals: dict[str, int]
    counts: dict[str, dict[str, int]]
    report: dict[str, Any] = field(repr=False, default_factory=dict)
    exit_code: int = 0


def source_root(src: Path, layout: str) -> Path:
    """The folder that source paths are relative to (the CSV's folder for the csv layout)."""
    return find_csv(src).parent if layout == "csv" else src


def source_key(path: Path, root: Path) -> str:
    """A source path as recorded in the manifest: relative to the root when inside it."""
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return path.resolve().as_posix()


def run(cfg: PrepareConfig) -> Result:
    src, dst = Path(cfg.src), Path(os.path.abspath(cfg.dst))  # absolute: DST '.' has a real parent
    layout = detect_layout(src) if cfg.layout == "auto" else cfg.layout
    status(f"reading {src} as {layout} layout" + (" (detected)" if cfg.layout == "auto" else ""))
    found = discover(src, layout)
    if not found.samples:
        raise ImgclfError(f"{src}: found no images in the {layout} layout ({len(found.rejected)} other "
                          "files); check SRC and --layout (see imgclf prepare --help)")
    root = source_root(src, layout)
    protected = [find_csv(src)] + [s.source for s in found.samples] if layout == "csv" else [src]
    check_destination(dst, None if layout == "csv" else src, protected, cfg.force)
    dst.parent.mkdir(parents=True, exist_ok=True)
    with single_writer(lock_path(dst), f"DST {dst}"):
        prepared, report = _build(cfg, found, layout, root, dst)
    return summarise(dst, layout, report, prepared)


def _build(cfg: PrepareConfig, found: Discovery, layout: str, root: Path, dst: Path) -> tuple[Prepared, dict]:
    """Write the data set into a hidden workspace beside DST, then swap it in."""
    keys = [source_key(s.source, root) for s in found.samples]
    decode_settings = {"src": os.path.realpath(root), "mode": cfg.mode, "format": cfg.format,
                       "jpg_quality": cfg.jpg_quality, "max_pixels": cfg.max_pixels}
    work = make_workspace(dst, decode_settings)
    try:
        prepared = build_dataset(found.samples, keys, work, val=cfg.val, test=cfg.test, seed=cfg.seed,
                                 mode=cfg.mode, fmt=cfg.format, jpg_quality=cfg.jpg_quality,
                                 max_pixels=cfg.max_pixels, workers=cfg.workers,
                                 multi_label=found.multi_label, near_duplicates=cfg.near_duplicates,
                                 near_distance=cfg.near_distance)
        report = build_report(cfg, layout, found, prepared, root)
        write_outputs(work, prepared, report, found.multi_label)
        install_output(work, dst)
    except KeyboardInterrupt:
        status(f"interrupted: the files checked so far are kept in {work}; run the same command again to "
               "continue from there (or delete that folder)")
        raise
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return prepared, report


def write_outputs(work: Path, prepared: Prepared, report: dict[str, Any], multi_label: bool) -> None:
    """manifest.csv, prepare_report.json and, for multi-label data, <split>/labels.csv."""
    write_csv(work / "manifest.csv", MANIFEST_COLUMNS, prepared.rows)
    if multi_label:
        for split in sorted({row[4] for row in prepared.rows}):
            rows = [(row[1].split("/", 1)[1], row[3]) for row in prepared.rows if row[4] == split]
            write_csv(work / split / "labels.csv", ("path", "labels"), rows)
    write_json(work / REPORT_NAME, report)


def count_table(prepared: Prepared) -> dict[str, dict[str, int]]:
    """class -> split -> number of written images."""
    counts: dict[str, Counter[str]] = {}
    for row in prepared.rows:
        counts.setdefault(row[3], Counter())[row[4]] += 1
    return {cls: {split: c[split] for split in ("train", "val", "test") if c[split]}
            for cls, c in sorted(counts.items())}


def build_report(cfg: PrepareConfig, layout: str, found: Discovery, prepared: Prepared,
                 root: Path) -> dict[str, Any]:
    """The JSON report: settings, counts, and every rejected or dropped input with its reason."""
    rel = lambda p: _rel(p, root)  # noqa: E731
    rejected = sorted([(rel(p), r) for p, r in found.rejected] + prepared.rejected)
    near = near_duplicate_report(prepared)
    totals = {"inputs": len(found.samples) + len(found.rejected), "written": len(prepared.rows),
              "rejected": len(rejected), "duplicates": len(prepared.duplicates),
              "conflicts": len(prepared.conflicts), "near_duplicate_groups": len(near),
              "near_duplicate_images": sum(len(g["images"]) for g in near),
              "near_duplicate_groups_across_splits": sum(len(g["splits"]) > 1 for g in near)}
    settings = {k: v for k, v in asdict(cfg).items() if k not in ("src", "dst", "workers", "force")}
    return {
        "tool": REPORT_TOOL, "version": __version__, "layout": layout,
        "src": os.path.abspath(cfg.src), "settings": {**settings, "layout": layout},
        "multi_label": found.multi_label,
        "layout_note": (f"multi-label: images in <split>/{MULTI_LABEL_DIR}/, labels in <split>/labels.csv"
                        if found.multi_label else "single-label: <split>/<class>/<image>"),
        "totals": totals, "counts": count_table(prepared),
        "too_small_kept_in_train": prepared.too_small,
        "rejected": [{"path": p, "reason": r} for p, r in rejected],
        "duplicates": [{"path": p, "duplicate_of": k} for p, k in sorted(prepared.duplicates)],
        "conflicts": [{"path": p, "reason": r} for p, r in sorted(prepared.conflicts)],
        "ignored": [{"path": rel(p), "reason": r} for p, r in sorted(found.ignored)],
        "converted": [{"path": p, "notes": n} for p, n in prepared.notes],
        "near_duplicates": near,
    }


def near_duplicate_report(prepared: Prepared) -> list[dict[str, Any]]:
    """Each near-duplicate group: its splits and its images (path, class, split, bits from the first image)."""
    where = {row[0]: row for row in prepared.rows}
    groups = []
    for group in prepared.near_groups:
        images = [{"path": key, "class": where[key][3], "split": where[key][4], "bits": bits}
                  for key, bits in group if key in where]
        splits = sorted({image["split"] for image in images}, key=SPLIT_NAMES.index)
        groups.append({"splits": splits, "images": images})
    return groups


def _rel(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return path.as_posix()


def summarise(dst: Path, layout: str, report: dict[str, Any], prepared: Prepared) -> Result:
    """Print the per-class table and the totals line; build the Result."""
    counts = report["counts"]
    splits = [s for s in ("train", "val", "test") if any(s in c for c in counts.values())]
    rows = [(cls, *(c.get(s, 0) for s in splits), sum(c.values())) for cls, c in counts.items()]
    rows.append(("total", *(sum(r[i] for r in rows) for i in range(1, len(splits) + 2))))
    print_table(("class", *splits, "total"), rows)
    t = report["totals"]
    status(f"inputs {t['inputs']} = written {t['written']} + rejected {t['rejected']} + duplicates "
           f"{t['duplicates']} + conflicts {t['conflicts']}; details in {dst / REPORT_NAME}")
    if prepared.too_small:
        warn(f"too few images to reach every split, kept in train: {', '.join(prepared.too_small)}")
    if t["rejected"]:
        warn(f"{t['rejected']} file(s) rejected; see 'rejected' in {dst / REPORT_NAME}")
    _summarise_near(dst, report)
    return Result(dst, layout, t, counts, report)


def _summarise_near(dst: Path, report: dict[str, Any]) -> None:
    """One status line about near-duplicates; a warning when groups straddle splits."""
    settings, t = report["settings"], report["totals"]
    if settings["near_duplicates"] == "off":
        return
    groups, images = t["near_duplicate_groups"], t["near_duplicate_images"]
    across = t["near_duplicate_groups_across_splits"]
    kept = "each kept within one split" if settings["near_duplicates"] == "together" else "reported only"
    status(f"near-duplicates (perceptual hash within {settings['near_distance']} bits): {groups} group(s) of "
           f"{images} images, {kept}; see 'near_duplicates' in {dst / REPORT_NAME}")
    if across:
        warn(f"{across} near-duplicate group(s) span several splits: validation accuracy may be inflated "
             "(prepare again without --near-duplicates report to keep each group in one split)")
