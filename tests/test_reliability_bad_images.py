"""The bad-image corpus (25 kinds x 5+ files) through decode, prepare, train, predict and enhance.

Every rejected file must be named with a reason, every accepted one must give the
right pixels (orientation applied, 16-bit range kept), nothing may crash or hang
(real subprocesses with timeouts), and bombs must be refused before their pixels exist.
"""

from __future__ import annotations

import csv
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import make_class_folders, make_split_tree, tree_digest, write_files
from PIL import Image
from reliability_helpers import (Kind, assert_pixels, bad_image_corpus, corpus_files, kind_of, record_figures,
                                 run_imgclf, run_python)

from imgclf.data.decode import decode_image
from imgclf.errors import ImageDecodeError

KINDS = bad_image_corpus()
FILES = corpus_files(KINDS)
KIND_OF = kind_of(KINDS)
REJECT = sorted(n for n, k in KIND_OF.items() if not k.accept)
ACCEPT = sorted(n for n, k in KIND_OF.items() if k.accept)


def check_reason(name: str, reason: str) -> None:
    kind = KIND_OF[name]
    assert reason and any(w.lower() in reason.lower() for w in kind.reason_words), f"{name}: reason {reason!r}"


def test_corpus_has_at_least_20_kinds_of_5_files() -> None:
    assert len(KINDS) >= 20
    assert all(len(k.files) >= 5 for k in KINDS), [k.name for k in KINDS if len(k.files) < 5]
    record_figures("corpus", kinds=len(KINDS), files=len(FILES), rejected_kinds=sum(not k.accept for k in KINDS),
                   accepted_kinds=sum(k.accept for k in KINDS))


@pytest.mark.parametrize("kind", KINDS, ids=[k.name for k in KINDS])
def test_decode_each_kind(tmp_path: Path, kind: Kind) -> None:
    """decode_image: ImageDecodeError naming the file and why, or exactly the expected pixels."""
    for path in write_files(tmp_path, kind.files):
        if not kind.accept:
            with pytest.raises(ImageDecodeError) as info:
                decode_image(path)
            assert info.value.path == str(path)
            check_reason(path.name, info.value.reason)
        else:
            decoded = decode_image(path, "keep")
            assert_pixels(np.asarray(decoded.image), kind.expected[path.name], kind.atol, path.name)


def test_sixteen_bit_grey_keeps_its_range(tmp_path: Path) -> None:
    for name in [n for n in ACCEPT if n.startswith("grey16_")]:
        (path,) = write_files(tmp_path, {name: FILES[name]})
        kept = decode_image(path, "keep").image
        assert kept.mode == "I;16" and int(np.asarray(kept).max()) >= 65531, name
        grey = np.asarray(decode_image(path, "gray").image)
        assert grey.max() == 255 and len(np.unique(grey)) > 64, name  # scaled, not clipped at 255


def test_truncated_images_are_never_grey_filled() -> None:
    """Pillow's LOAD_TRUNCATED_IMAGES stays off once every imgclf module is imported."""
    code = ("import importlib, pkgutil, imgclf, imgclf.commands\n"
            "from PIL import ImageFile\n"
            "for m in pkgutil.walk_packages(imgclf.__path__, 'imgclf.'):\n"
            "    if not m.name.endswith('__main__'): importlib.import_module(m.name)\n"
            "print(ImageFile.LOAD_TRUNCATED_IMAGES)")
    done = run_python(code, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"


BOMB_RSS = """
import resource, sys, json
from pathlib import Path
from imgclf.data.decode import decode_image
from imgclf.errors import ImageDecodeError
Path(sys.argv[1], "warmup.png").write_bytes(Path(sys.argv[2]).read_bytes())
decode_image(Path(sys.argv[1], "warmup.png"))
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
refused = 0
for path in sorted(Path(sys.argv[1]).iterdir()):
    if path.name == "warmup.png":
        continue
    try:
        decode_image(path)
    except ImageDecodeError:
        refused += 1
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"base_kib": base, "peak_kib": peak, "refused": refused}))
"""
BOMB_RSS_BOUND_MIB = 32


def test_bombs_are_refused_before_their_pixels_exist(tmp_path: Path) -> None:
    """Decoding 15 bombs (up to 65535x65535 declared) raises peak RSS by less than 32 MiB."""
    bombs = {n: FILES[n] for n in REJECT if KIND_OF[n].name.endswith("_bomb")}
    write_files(tmp_path / "bombs", bombs)
    warm = tmp_path / "warm.png"
    warm.write_bytes(FILES["aspect_1x4000.png"])
    done = run_python(BOMB_RSS, timeout=120, args=[tmp_path / "bombs", warm])
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    grown_mib = (result["peak_kib"] - result["base_kib"]) / 1024
    assert result["refused"] == len(bombs)
    assert grown_mib < BOMB_RSS_BOUND_MIB, result
    record_figures("bombs", bombs=len(bombs), refused=result["refused"], rss_growth_mib=round(grown_mib, 2),
                   base_rss_mib=round(result["base_kib"] / 1024, 1), bound_mib=BOMB_RSS_BOUND_MIB)


GHOSTSCRIPT_AUDIT = """
import sys, json
from pathlib import Path
from imgclf.cli import main
from imgclf.commands import prepare  # imports done (torch's own ldconfig call included) before auditing
import torch  # load_images imports it on first use (the export path decodes without torch)
from imgclf.data.decode import decode_image
from imgclf.data.loading import load_images, median_side
from imgclf.errors import ImageDecodeError
events = []
def hook(event, args):
    if event in ("subprocess.Popen", "os.system", "os.exec", "os.posix_spawn", "os.spawn", "os.fork",
                 "os.startfile", "ctypes.dlopen"):
        events.append([event, repr(args)[:200]])
sys.addaudithook(hook)
folder = Path(sys.argv[1])
paths = sorted(p for p in folder.rglob("*") if p.is_file())
reasons = {}
for path in paths:
    try:
        decode_image(path)
    except ImageDecodeError as err:
        reasons[path.name] = err.reason
median_side(paths)
_, ok, errors = load_images(paths, 32, 3)
code = main(["prepare", str(folder), sys.argv[2], "--val", "0", "--workers", "1"])
print(json.dumps({"events": events, "reasons": reasons, "loaded": len(ok), "prepare_exit": code}))
"""


def test_eps_never_reaches_ghostscript(tmp_path: Path) -> None:
    """EPS under image names: refused by decode, loading and prepare; no process is ever started."""
    eps = {n: FILES[n] for n in REJECT if KIND_OF[n].name == "eps"}
    write_files(tmp_path / "src" / "cls", eps)
    (tmp_path / "src" / "cls" / "real.eps").write_bytes(next(iter(eps.values())))
    done = run_python(GHOSTSCRIPT_AUDIT, timeout=120, args=[tmp_path / "src", tmp_path / "dst"])
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.splitlines()[-1] if done.stdout else "{}")
    assert result["events"] == [], f"a process was started while reading EPS files: {result['events']}"
    assert result["loaded"] == 0 and result["prepare_exit"] == 1
    assert set(result["reasons"]) == set(eps) | {"real.eps"}
    assert all("PostScript" in r for r in result["reasons"].values())


def make_messy_source(root: Path) -> Path:
    """SRC/<good classes>/ plus SRC/odd/ holding the whole corpus."""
    make_class_folders(root, ("circle", "square"), per_class=6, size=32)
    write_files(root / "odd", FILES)
    return root


def test_prepare_reports_every_bad_file_and_writes_the_right_pixels(tmp_path: Path) -> None:
    src = make_messy_source(tmp_path / "src")
    before = tree_digest(src)
    done = run_imgclf(["prepare", src, tmp_path / "dst", "--val", "0.2", "--workers", "2"], timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert tree_digest(src) == before
    report = json.loads((tmp_path / "dst" / "prepare_report.json").read_text())
    rejected = {Path(r["path"]).name: r["reason"] for r in report["rejected"]}
    assert sorted(rejected) == REJECT
    for name, reason in rejected.items():
        check_reason(name, reason)
    assert report["duplicates"] == [] and report["conflicts"] == []
    with open(tmp_path / "dst" / "manifest.csv", newline="") as f:
        written = {Path(r["source"]).name: tmp_path / "dst" / r["destination"] for r in csv.DictReader(f)}
    assert set(ACCEPT) <= set(written), sorted(set(ACCEPT) - set(written))
    for name in ACCEPT:
        kind = KIND_OF[name]
        with Image.open(written[name]) as img:
            assert_pixels(np.asarray(img), kind.expected[name], kind.atol, f"prepared {name}")
            if name.startswith("grey16_"):
                assert img.mode.startswith("I"), name
    record_figures("prepare_corpus", files=len(FILES), rejected=len(rejected), accepted=len(ACCEPT),
                   pixel_checked=len(ACCEPT), src_modified=0)


def make_unprepared_tree(root: Path) -> tuple[Path, list[str]]:
    """DATA/{train,val}/<class>/ of good images with the corpus mixed into train and val."""
    make_split_tree(root, train_per_class=8, val_per_class=3, size=32, classes=("circle", "square"))
    names = sorted(FILES)
    write_files(root / "train" / "circle", {n: FILES[n] for n in names[0::2]})
    write_files(root / "val" / "square", {n: FILES[n] for n in names[1::2]})
    return root, names


@pytest.mark.parametrize("cache", ["memory", "off"])
def test_train_on_an_unprepared_tree_finishes_and_names_bad_files(tmp_path: Path, cache: str) -> None:
    data, _ = make_unprepared_tree(tmp_path / "data")
    before = tree_digest(data)
    args = ["train", data, "--out", tmp_path / "run", "--model", "small_cnn", "--epochs", "1", "--img-size", "32",
            "--batch-size", "8", "--cache", cache, "--precision", "fp32", "--device", "cpu"]
    if cache == "off":
        args += ["--workers", "2"]
    done = run_imgclf(args, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert tree_digest(data) == before
    for name in REJECT:   # named on stderr, with the reason
        lines = [ln for ln in done.stderr.splitlines() if f"/{name}:" in ln]
        assert lines, f"{name} not reported"
        check_reason(name, lines[0].split(f"/{name}:", 1)[1])
    for name in ACCEPT:
        assert f"/{name}:" not in done.stderr, f"{name} was rejected but is a valid image"
    derived = json.loads((tmp_path / "run" / "config.json").read_text())["derived"]
    if cache == "memory":
        assert sorted(Path(p).name for p, _ in derived["rejected_files"]) == REJECT
        train_ok = 16 + len([n for n in sorted(FILES)[0::2] if n in ACCEPT])
        assert derived["train_images"] == train_ok
    metrics = (tmp_path / "run" / "metrics.csv").read_text().splitlines()
    assert len(metrics) == 2   # header + the epoch's evaluation: the epoch finished
    record_figures(f"train_unprepared_{cache}", files=len(FILES), rejected_named=len(REJECT), crashes=0)


def test_predict_skips_bad_files_with_a_reason(trained_run: Path, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    from imgclf.cli import main

    write_files(tmp_path / "new", FILES)
    before = tree_digest(tmp_path / "new")
    assert main(["predict", str(trained_run), str(tmp_path / "new"), "--json", "--device", "cpu"]) == 1
    out = json.loads(capsys.readouterr().out)
    skipped = {Path(s["path"]).name: s["reason"] for s in out["skipped"]}
    assert sorted(skipped) == REJECT
    for name, reason in skipped.items():
        check_reason(name, reason)
    assert sorted(Path(p["path"]).name for p in out["predictions"]) == ACCEPT
    assert all(abs(sum(t["prob"] for t in p["top"]) - 1) < 1e-3 for p in out["predictions"])
    assert tree_digest(tmp_path / "new") == before
    record_figures("predict_corpus", files=len(FILES), skipped_with_reason=len(skipped), predicted=len(ACCEPT))


@pytest.mark.skipif(not (Path(__file__).parents[1] / "src/imgclf/commands/enhance.py").exists(),
                    reason="imgclf enhance is not there yet")
def test_enhance_on_a_folder_skips_bad_files(trained_run: Path, tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    import imgclf

    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    write_files(tmp_path / "imgs", FILES)
    before = tree_digest(tmp_path / "imgs")
    result = imgclf.enhance(run, images=tmp_path / "imgs", figures=2, device="cpu")
    err = capsys.readouterr().err
    assert result.num_images == len(ACCEPT)
    for name in REJECT:
        assert f"/{name}:" in err, f"{name} not reported"
    assert tree_digest(tmp_path / "imgs") == before
    record_figures("enhance_corpus", files=len(FILES), skipped=len(REJECT), enhanced=len(ACCEPT))


def test_orientation_through_predict_matches_the_upright_image(trained_run: Path, tmp_path: Path) -> None:
    """All 8 EXIF orientations give the same prediction as the upright image saved without EXIF."""
    import imgclf
    from reliability_helpers import orientation_files

    files, expected = orientation_files()
    write_files(tmp_path / "o", files)
    for name, arr in expected.items():
        Image.fromarray(arr).save(tmp_path / "o" / f"upright_{name}.png")
    result = imgclf.predict(trained_run, [tmp_path / "o"], topk=3, device="cpu")
    probs = {Path(r["path"]).name: {t["class"]: t["prob"] for t in r["top"]} for r in result.predictions}
    for name in files:
        a, b = probs[name], probs[f"upright_{name}.png"]
        assert a.keys() == b.keys() and all(abs(a[c] - b[c]) < 0.05 for c in a), name


if sys.platform != "linux":  # pragma: no cover
    pytestmark = pytest.mark.skip(reason="uses Linux-only process accounting")


THIN_STRIP = """
import os, resource, sys, json
from pathlib import Path
from imgclf.data.loading import decode_resized
vsize = int(open("/proc/self/statm").read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
limit = vsize + (2 << 30)   # a regression fails with MemoryError here, not with the OOM killer
resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
out = decode_resized(Path(sys.argv[1]), 32, 3)
print(json.dumps({"shape": list(out.shape), "base_mib": base,
                  "peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024}))
"""
THIN_STRIP_BOUND_MIB = 1024   # growth over the imported baseline; before the fix: a 30 GiB allocation


def test_thin_strip_is_resized_without_a_memory_blowup(tmp_path: Path) -> None:
    """A 2 x 20,000,000 PNG (40 Mpx, under --max-pixels) used to need 32 x 320M x 3 bytes to resize."""
    strip = np.zeros((20_000_000, 2), dtype=np.uint8)
    strip[::7] = 200
    path = tmp_path / "strip.png"
    Image.fromarray(strip).save(path, compress_level=9)
    del strip
    done = run_python(THIN_STRIP, timeout=120, args=[path])
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout)
    grown = result["peak_mib"] - result["base_mib"]
    assert result["shape"] == [3, 32, 32] and grown < THIN_STRIP_BOUND_MIB, result
    record_figures("thin_strip", pixels=40_000_000, rss_growth_mib=grown, bound_mib=THIN_STRIP_BOUND_MIB)
