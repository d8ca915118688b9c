"""--cache memory | disk | off | auto: the same batches and numbers in every mode, exact resume across modes,
and a second run that trains from the decode cache without decoding."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import make_split_tree, write_files
from PIL import Image
from test_engine import assert_same_weights, read_metrics, snapshot_run_at

import imgclf
from imgclf.data.cache import FOLDER_IN_DATA
from imgclf.data.loading import decode_resized
from imgclf.data.sources import StreamSource
from imgclf.data.training import GIB, choose_mode, load_training_data
from imgclf.errors import ImgclfError

RUN = dict(model="small_cnn", epochs=2, batch_size=8, img_size=24, deterministic=True, precision="fp32",
           device="cpu", seed=4, workers=1)


@pytest.fixture(scope="module")
def clean_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A prepared-looking tree of 64 px JPEGs (so the reduced-scale decode is exercised)."""
    root = make_split_tree(tmp_path_factory.mktemp("modes") / "data", train_per_class=8, val_per_class=3, size=64)
    for path in list(root.rglob("*.png")):
        Image.open(path).convert("RGB").save(path.with_suffix(".jpg"), quality=90)
        path.unlink()
    (root / "prepare_report.json").write_text(json.dumps({"tool": "imgclf prepare"}))
    return root


@pytest.fixture(scope="module")
def jpeg_data(clean_data: Path) -> Path:
    """The same plus one file that cannot be decoded."""
    root = clean_data.parent / "with-broken"
    shutil.copytree(clean_data, root)
    write_files(root / "train" / "circle", {"circle_zz_broken.jpg": b"\xff\xd8 not really a jpeg"})
    return root


def all_batches(source: object, order: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return list(source.batches(order, 5))   # type: ignore[attr-defined]


def test_every_mode_yields_the_same_batches_and_stats(jpeg_data: Path) -> None:
    loaded = {mode: load_training_data(jpeg_data, 24, 3, mode, 4.0, workers=1) for mode in ("memory", "disk", "off")}
    assert [d.mode for d in loaded.values()] == ["memory", "disk", "stream"]
    reference = loaded["memory"]
    order = torch.randperm(reference.train.num_images, generator=torch.Generator().manual_seed(0))
    expected = all_batches(reference.train, order)
    for mode, data in loaded.items():
        assert (data.mean, data.std) == (reference.mean, reference.std), mode
        got = all_batches(data.train, order if mode != "off" else _with_broken(data, order))
        assert len(got) == len(expected), mode
        for (xa, ya), (xb, yb) in zip(expected, got):
            assert torch.equal(xa, xb) and torch.equal(ya, yb), mode
        val = all_batches(data.val, torch.arange(data.val.num_images))
        assert torch.equal(torch.cat([x for x, _ in val]), reference.val.images), mode   # type: ignore[attr-defined]
    assert len(reference.rejected) == 1 and reference.train.num_images == 24


def _with_broken(data: object, order: torch.Tensor) -> torch.Tensor:
    """Streaming lists every file (the broken one is dropped per batch): map the memory-mode order onto it."""
    paths = [data.train.dataset.path(i) for i in range(data.train.num_images)]   # type: ignore[attr-defined]
    kept = [i for i, p in enumerate(paths) if p.name != "circle_zz_broken.jpg"]
    return torch.tensor([kept[i] for i in order.tolist()])


@pytest.mark.parametrize("workers", [0, 1, 2])
def test_both_stream_decoders_give_the_same_batches_and_skip_a_broken_file(jpeg_data: Path, workers: int) -> None:
    """Threads (training on the CPU) and worker processes (on CUDA): the same batches, the undecodable
    file dropped from its batch and reported once, over two passes."""
    paths = sorted((jpeg_data / "train").rglob("*.jpg"))
    targets = list(range(len(paths)))
    order = torch.randperm(len(paths), generator=torch.Generator().manual_seed(1))
    got = {}
    for decoder in ("threads", "processes"):
        source = StreamSource(paths, targets, 24, 3, workers, decoder=decoder)
        got[decoder] = [all_batches(source, order) for _ in range(2)]
        assert [p.name for p in source.skipped] == ["circle_zz_broken.jpg"], decoder
    threads, processes = got["threads"], got["processes"]
    assert len(threads[0]) == len(processes[0]) == len(threads[1])
    for one, other in ((threads[0], processes[0]), (threads[0], threads[1]), (processes[0], processes[1])):
        for (xa, ya), (xb, yb) in zip(one, other):
            assert torch.equal(xa, xb) and torch.equal(ya, yb)
    seen = torch.cat([y for _, y in threads[0]]).tolist()
    broken = next(i for i, p in enumerate(paths) if p.name == "circle_zz_broken.jpg")
    assert sorted(seen) == [i for i in range(len(paths)) if i != broken]
    first = next(i for i in order.tolist() if i != broken)
    x, y = threads[0][0]
    assert int(y[0]) == first and torch.equal(x[0], torch.from_numpy(decode_resized(paths[first], 24, 3)))
    with pytest.raises(ValueError, match="decoder"):
        StreamSource(paths, targets, 24, 3, 1, decoder="gpu")


def test_memory_rows_are_the_one_geometry(jpeg_data: Path) -> None:
    data = load_training_data(jpeg_data, 24, 3, "memory", 4.0, workers=1)
    first = sorted((jpeg_data / "train").rglob("*.jpg"))[0]
    assert torch.equal(data.train.images[0], torch.from_numpy(decode_resized(first, 24, 3)))   # type: ignore[attr-defined]
    assert (jpeg_data / FOLDER_IN_DATA).is_dir()   # prepared data keeps its own cache


def test_auto_chooses_by_size_and_never_exceeds_the_budget(tmp_path: Path) -> None:
    assert choose_mode("auto", GIB, 1.0, tmp_path) == "memory"
    assert choose_mode("auto", GIB + 1, 1.0, tmp_path) == "disk"
    assert choose_mode("auto", GIB + 1, 1.0, None) == "stream"
    assert choose_mode("auto", 10**18, 1.0, tmp_path) == "stream"   # no room on disk either
    assert choose_mode("off", 1, 1.0, tmp_path) == "stream"
    assert choose_mode("disk", 1, 1.0, tmp_path) == "disk"


def test_second_run_trains_from_the_cache_without_decoding(jpeg_data: Path, tmp_path: Path) -> None:
    data = tmp_path / "data"
    shutil.copytree(jpeg_data, data, copy_function=shutil.copy2)
    shutil.rmtree(data / FOLDER_IN_DATA, ignore_errors=True)
    imgclf.train(data, out=tmp_path / "first", cache="disk", **RUN)
    # Overwrite every image with garbage of the same size and mtime: only a run that never decodes still trains.
    for path in (data / "train").rglob("*.jpg"):
        st = path.stat()
        path.write_bytes(b"\0" * st.st_size)
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    imgclf.train(data, out=tmp_path / "second", cache="disk", **RUN)
    assert_same_weights(tmp_path / "first", tmp_path / "second")
    assert json.loads((tmp_path / "second" / "config.json").read_text())["derived"]["cache_mode"] == "disk"


@pytest.mark.parametrize("first, then", [("disk", "off"), ("off", "memory")])
def test_resume_is_exact_across_modes(clean_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                      first: str, then: str) -> None:
    """Without undecodable files (what prepare guarantees) the mode may change on --resume."""
    imgclf.train(clean_data, out=tmp_path / "full", cache="memory", **RUN)
    snapshot_run_at(monkeypatch, 4, tmp_path / "stopped")
    imgclf.train(clean_data, out=tmp_path / "run", cache=first, save_every=4, **RUN)
    monkeypatch.undo()
    imgclf.train(resume=tmp_path / "stopped", cache=then)
    assert_same_weights(tmp_path / "full", tmp_path / "stopped")
    full, resumed = read_metrics(tmp_path / "full"), read_metrics(tmp_path / "stopped")
    assert [(r["step"], r["val_loss"]) for r in resumed] == [(r["step"], r["val_loss"]) for r in full]


def test_preprocess_is_stored_in_the_cache_and_applied_once(jpeg_data: Path) -> None:
    from imgclf.analysis.enhance import make_preprocess

    fn = make_preprocess("gamma:g=0.5")
    plain = load_training_data(jpeg_data, 24, 3, "memory", 4.0, workers=1)
    for mode in ("memory", "disk"):
        data = load_training_data(jpeg_data, 24, 3, mode, 4.0, workers=1, preprocess="gamma:g=0.5", preprocess_fn=fn)
        assert data.preprocessed
        (x, _), = list(data.train.batches(torch.arange(4), 4))
        assert torch.equal(x, fn(plain.train.images[:4])), mode   # type: ignore[attr-defined]
    stream = load_training_data(jpeg_data, 24, 3, "off", 4.0, workers=1, preprocess="gamma:g=0.5", preprocess_fn=fn)
    assert not stream.preprocessed and (stream.mean, stream.std) == (data.mean, data.std)
    assert np.isfinite(data.mean).all()


def test_evaluate_reads_the_cache_training_left_and_never_a_damaged_one(clean_data: Path, tmp_path: Path) -> None:
    """evaluate takes a split's pixels from the decode cache of the training run when it matches exactly
    (same numbers as decoding), reads it only, and decodes when the cache does not verify."""
    data = tmp_path / "data"
    shutil.copytree(clean_data, data, copy_function=shutil.copy2)
    shutil.rmtree(data / FOLDER_IN_DATA, ignore_errors=True)
    run = tmp_path / "run"
    imgclf.train(data, out=run, cache="memory", **RUN)
    val_cache = next((data / FOLDER_IN_DATA).glob("val-24px-3c-none.u8"))

    def evaluate() -> tuple[float, float, str]:
        result = imgclf.evaluate(run, data, split="val", precision="fp32")
        return result.accuracy, result.loss, (run / "predictions.csv").read_text()

    from_cache = evaluate()
    (data / FOLDER_IN_DATA).rename(tmp_path / "aside")
    assert evaluate() == from_cache                       # decoded: the very same pixels and numbers
    (tmp_path / "aside").rename(data / FOLDER_IN_DATA)
    for path in (data / "val").rglob("*.jpg"):            # same size and mtime, no longer an image
        st = path.stat()
        path.write_bytes(b"\0" * st.st_size)
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert evaluate() == from_cache                       # read from the cache, not decoded
    raw = bytearray(val_cache.read_bytes())
    raw[-1] ^= 0xFF                                       # one pixel of the last row
    val_cache.write_bytes(bytes(raw))
    digest = hashlib.sha256(val_cache.read_bytes()).hexdigest()
    with pytest.raises(ImgclfError, match=r"cannot be decoded: .*\.jpg"):   # not trusted: decoded, and named
        imgclf.evaluate(run, data, split="val", precision="fp32")
    assert hashlib.sha256(val_cache.read_bytes()).hexdigest() == digest   # evaluate never writes a cache
