"""The persistent decode cache: built once, reused, and rebuilt whenever it is stale or damaged."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import make_split_tree, write_files

from imgclf.data.cache import FOLDER_IN_DATA, CacheSpec, cache_folder, files_fingerprint, open_cache, read_header
from imgclf.data.cache_write import load_or_build
from imgclf.data.folders import list_split
from imgclf.data.loading import GEOMETRY, decode_chunks, decode_resized

REPO = Path(__file__).resolve().parents[1]


def spec_of(root: Path, split: str = "train", size: int = 16) -> CacheSpec:
    paths, _, _ = list_split(root, split)
    return CacheSpec(split, tuple(paths), root, size, 3, "none", GEOMETRY)


def build(path: Path, spec: CacheSpec) -> tuple[np.ndarray, bool]:
    _, rows, built = load_or_build(path, spec, lambda: decode_chunks(spec.paths, spec.img_size, 3, workers=1))
    assert rows is not None
    return rows, built


@pytest.fixture
def data(tmp_path: Path) -> Path:
    return make_split_tree(tmp_path / "data", train_per_class=4, val_per_class=2)


def test_rows_are_the_decoded_pixels_and_reused(data: Path, tmp_path: Path) -> None:
    spec = spec_of(data)
    path = tmp_path / "c" / spec.file_name()
    path.parent.mkdir()
    rows, built = build(path, spec)
    assert built and rows.shape == (12, 3, 16, 16)
    for i, p in enumerate(spec.paths):
        assert np.array_equal(rows[i], decode_resized(p, 16, 3))
    again, built = build(path, spec)
    assert not built and np.array_equal(again, rows)
    header, offset = read_header(path)
    assert header["geometry"] == GEOMETRY and header["num_files"] == 12 and offset % 4096 == 0


def test_undecodable_file_is_recorded_with_its_reason(data: Path, tmp_path: Path) -> None:
    write_files(data / "train" / "circle", {"zz_broken.png": b"not an image"})
    spec = spec_of(data)
    rows, _ = build(tmp_path / spec.file_name(), spec)
    cache = open_cache(tmp_path / spec.file_name(), spec)
    bad = [i for i, p in enumerate(spec.paths) if p.name == "zz_broken.png"]
    assert list(cache.rejected) == bad and "not a recognised image format" in cache.rejected[bad[0]]
    assert not rows[bad[0]].any() and len(cache.ok_indices()) == len(spec.paths) - 1


def test_changed_file_makes_the_cache_stale(data: Path, tmp_path: Path) -> None:
    spec = spec_of(data)
    path = tmp_path / spec.file_name()
    build(path, spec)
    victim = spec.paths[3]
    from PIL import Image

    Image.new("RGB", (32, 32), (255, 255, 255)).save(victim)
    os.utime(victim, ns=(time.time_ns(), time.time_ns() + 10**9))
    rows, built = build(path, spec_of(data))
    assert built and (rows[3] == 255).all()


@pytest.mark.parametrize("damage", ["flip a pixel byte", "truncate", "garbage header", "other size"])
def test_damaged_cache_is_detected_and_rebuilt(data: Path, tmp_path: Path, damage: str,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    spec = spec_of(data)
    path = tmp_path / spec.file_name()
    good, _ = build(path, spec)
    raw = bytearray(path.read_bytes())
    if damage == "flip a pixel byte":
        raw[-100] ^= 0xFF
    elif damage == "truncate":
        raw = raw[:-500]
    elif damage == "garbage header":
        raw[20:40] = b"x" * 20
    path.write_bytes(bytes(raw))
    other = CacheSpec(spec.split, spec.paths, spec.root, 8, 3, "none", GEOMETRY) if damage == "other size" else spec
    rows, built = build(path, other)
    assert built
    if damage != "other size":
        assert np.array_equal(rows, good)
    assert "not usable" in capsys.readouterr().err


def test_cache_folder_is_ours_only_for_prepared_data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    plain = make_split_tree(tmp_path / "plain", 2, 1)
    folder = cache_folder(plain)
    assert folder is not None and folder.is_relative_to(tmp_path / "xdg" / "imgclf") and not (plain / FOLDER_IN_DATA).exists()
    prepared = make_split_tree(tmp_path / "prepared", 2, 1)
    (prepared / "prepare_report.json").write_text(json.dumps({"tool": "imgclf prepare"}))
    assert cache_folder(prepared) == prepared / FOLDER_IN_DATA
    assert cache_folder(prepared, tmp_path / "mine").is_relative_to(tmp_path / "mine")   # type: ignore[union-attr]


BUILDER = """
import sys, time
from pathlib import Path
sys.path.insert(0, sys.argv[3])
from test_cache import spec_of, build
go = Path(sys.argv[2])
while not go.exists():
    time.sleep(0.01)
rows, built = build(Path(sys.argv[1]) / "cache.u8", spec_of(Path(sys.argv[4]), size=24))
print(int(built), rows.sum())
"""


def test_two_processes_at_once_one_builds_both_correct(tmp_path: Path) -> None:
    data = make_split_tree(tmp_path / "data", train_per_class=30, val_per_class=1)
    go = tmp_path / "go"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "src"), str(REPO / "tests")])}
    procs = [subprocess.Popen([sys.executable, "-c", BUILDER, str(tmp_path), str(go), str(REPO / "tests"),
                               str(data)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
             for _ in range(2)]
    time.sleep(1.0)   # both interpreters up and waiting
    go.touch()
    outs = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    results = [out.split() for out, _ in outs]
    assert sorted(r[0] for r in results) == ["0", "1"]          # exactly one built
    assert results[0][1] == results[1][1]                       # both saw the same pixels
    assert not list(tmp_path.glob("cache.u8.tmp-*"))


def test_long_header_moves_the_rows_and_stays_readable(tmp_path: Path) -> None:
    data = make_split_tree(tmp_path / "data", train_per_class=2, val_per_class=1)
    write_files(data / "train" / "square", {f"broken_{i:03d}_{'x' * 40}.png": b"no" for i in range(120)})
    spec = spec_of(data)
    rows, _ = build(tmp_path / spec.file_name(), spec)
    header, offset = read_header(tmp_path / spec.file_name())
    assert offset > 4096 and len(header["rejected"]) == 120
    good = [i for i, p in enumerate(spec.paths) if not p.name.startswith("broken")]
    assert all(np.array_equal(rows[i], decode_resized(spec.paths[i], 16, 3)) for i in good)


def test_files_fingerprint_names_files_relative_to_the_root_however_it_is_given(tmp_path: Path,
                                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    names = ["a/x.jpg", "a-b/x.jpg", "a b/y.png", "a/b/c.jpg", "é/ü.jpg"]
    for rel in names:
        (tmp_path / "data" / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "data" / rel).write_bytes(rel.encode())
    paths = [tmp_path / "data" / rel for rel in names]
    expected = hashlib.sha256()
    for path, rel in zip(paths, names):
        st = os.stat(path)
        expected.update(f"{rel}\0{st.st_size}:{st.st_mtime_ns}\n".encode())
    monkeypatch.chdir(tmp_path)
    assert files_fingerprint(paths, tmp_path / "data") == expected.hexdigest()
    assert files_fingerprint(paths, Path("data")) == expected.hexdigest()                        # relative root
    assert files_fingerprint([Path("data") / rel for rel in names], tmp_path / "data") == expected.hexdigest()
