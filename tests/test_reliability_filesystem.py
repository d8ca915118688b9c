"""File-system oddities: Unicode and long names, leading '-', case collisions, links, FIFOs,
unreadable files, empty class folders and a read-only source. Clear messages, nothing written in SRC.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import tempfile
import unicodedata
from pathlib import Path

import pytest
from conftest import draw_sample, make_class_folders, make_split_tree, tree_digest
from reliability_helpers import record_figures, run_imgclf, run_python

from imgclf.cli import main

NFC = unicodedata.normalize("NFC", "café")
NFD = unicodedata.normalize("NFD", "café")
ODD_NAMES = [f"{NFC}.png", f"{NFD}.png", "猫の写真.png", "🐱🐶.png", "-rf.png", "--help.png", "a.png", "A.png",
             "x" * 251 + ".png", "X" * 251 + ".png", "é" * 125 + "e.png", " lead and trail .png",
             "semi;colon,comma.png", "new\nline.png", "tab\there.png"]


def listing(root: Path) -> set[str]:
    """Every path under root, folders and links included (to prove nothing was added)."""
    return {str(p.relative_to(root)) for p in root.rglob("*")}


def test_odd_names_are_prepared_with_unique_names(tmp_path: Path) -> None:
    src = make_class_folders(tmp_path / "src", ("circle", "square"), per_class=4)
    for i, name in enumerate(ODD_NAMES):
        assert len(name.encode()) <= 255
        draw_sample("circle", 200 + i, 24).save(src / "circle" / name)
    before, names_before = tree_digest(src), listing(src)
    code = main(["prepare", str(src), str(tmp_path / "dst"), "--val", "0.2"])
    assert code == 0
    assert tree_digest(src) == before and listing(src) == names_before
    report = json.loads((tmp_path / "dst" / "prepare_report.json").read_text())
    assert report["rejected"] == [] and report["totals"]["written"] == 8 + len(ODD_NAMES)
    written = [p for p in (tmp_path / "dst").rglob("*.png")]
    assert len(written) == 8 + len(ODD_NAMES)
    folders: dict[Path, set[str]] = {}
    for p in written:
        assert len(p.name.encode()) <= 255, p.name
        lower = folders.setdefault(p.parent, set())
        assert p.name.lower() not in lower, f"case collision {p.name}"
        lower.add(p.name.lower())
    record_figures("odd_names", names=len(ODD_NAMES), written=len(written), collisions=0, src_modified=0)


def test_links_loops_and_fifos_are_reported_not_followed(tmp_path: Path) -> None:
    outside = tmp_path / "outside.png"
    draw_sample("cross", 1, 24).save(outside)
    src = make_class_folders(tmp_path / "src", ("circle", "square"), per_class=4)
    (src / "circle" / "loop").symlink_to(src / "circle", target_is_directory=True)
    (src / "circle" / "up").symlink_to(tmp_path, target_is_directory=True)
    (src / "circle" / "out.png").symlink_to(outside)
    (src / "circle" / "broken.png").symlink_to(tmp_path / "missing.png")
    (src / "circle" / "inside.png").symlink_to(src / "square" / "square_000.png")
    os.mkfifo(src / "circle" / "pipe.png")
    before = listing(src)
    done = run_imgclf(["prepare", src, tmp_path / "dst", "--val", "0.2"], timeout=60)   # a FIFO read would hang
    assert done.returncode == 0, done.stderr
    report = json.loads((tmp_path / "dst" / "prepare_report.json").read_text())
    rejected = {r["path"]: r["reason"] for r in report["rejected"]}
    ignored = {r["path"]: r["reason"] for r in report["ignored"]}
    assert "outside SRC" in rejected["circle/out.png"] and "broken" in rejected["circle/broken.png"]
    assert "not a regular file" in rejected["circle/pipe.png"]
    assert "not followed" in ignored["circle/loop"] and "not followed" in ignored["circle/up"]
    assert "outside.png" not in (tmp_path / "dst" / "manifest.csv").read_text()
    assert listing(src) == before


UNREADABLE = """
import json, sys
from pathlib import Path
from imgclf.data.decode import decode_image
from imgclf.errors import ImageDecodeError
try:
    decode_image(Path(sys.argv[1]))
    print(json.dumps({"read": True}))
except ImageDecodeError as err:
    print(json.dumps({"read": False, "reason": err.reason}))
"""
NO_DAC = ["setpriv", "--bounding-set=-dac_override,-dac_read_search"]


def test_unreadable_files(tmp_path: Path) -> None:
    """Root reads chmod-000 files anyway, so the child runs without CAP_DAC_OVERRIDE (setpriv)."""
    import shutil
    import sys

    from reliability_helpers import child_env

    if shutil.which("setpriv") is None:
        pytest.skip("setpriv not installed: cannot drop root's right to read any file")
    src = make_class_folders(tmp_path / "src", ("circle", "square"), per_class=4)
    locked = src / "circle" / "circle_000.png"
    locked.chmod(0)
    probe = subprocess.run([*NO_DAC, "cat", str(locked)], capture_output=True)
    if probe.returncode == 0 or b"Permission denied" not in probe.stderr:
        pytest.skip(f"cannot make a file unreadable for a root child here ({probe.stderr.decode().strip()})")
    done = subprocess.run([*NO_DAC, sys.executable, "-c", UNREADABLE, str(locked)], capture_output=True, text=True,
                          timeout=60, env=child_env())
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"read": False, "reason": "permission denied (cannot read the file)"}
    done = subprocess.run([*NO_DAC, sys.executable, "-m", "imgclf", "prepare", str(src), str(tmp_path / "dst"),
                           "--val", "0.25"], capture_output=True, text=True, timeout=120, env=child_env())
    assert done.returncode == 0, done.stderr
    report = json.loads((tmp_path / "dst" / "prepare_report.json").read_text())
    assert report["rejected"] == [{"path": "circle/circle_000.png", "reason": "permission denied (cannot read the file)"}]
    assert "circle_000.png" in done.stderr or "rejected" in done.stderr
    record_figures("unreadable", files=1, reported=1)


def test_empty_class_folders_are_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = make_class_folders(tmp_path / "src", ("circle", "square"), per_class=4)
    (src / "empty").mkdir()
    assert main(["prepare", str(src), str(tmp_path / "dst"), "--val", "0.25"]) == 0
    report = json.loads((tmp_path / "dst" / "prepare_report.json").read_text())
    assert {"path": "empty", "reason": "empty class folder (no image files in it)"} in report["ignored"]
    data = make_split_tree(tmp_path / "data", 4, 2, classes=("circle", "square"))
    (data / "train" / "empty").mkdir()
    capsys.readouterr()
    assert main(["train", str(data), "--out", str(tmp_path / "run"), "--model", "small_cnn", "--epochs", "1",
                 "--img-size", "32", "--batch-size", "4", "--device", "cpu"]) == 0
    assert "train/empty: empty class folder" in capsys.readouterr().err


@pytest.fixture
def read_only_copy(tmp_path: Path):
    """``src`` bind-mounted read-only at ``ro`` (root can write through chmod, not through a ro mount)."""
    src = make_class_folders(tmp_path / "src", ("circle", "square"), per_class=5)
    make_split_tree(src / "data", 6, 2, classes=("circle", "square"))
    ro = tmp_path / "ro"
    ro.mkdir()
    done = subprocess.run(["mount", "--bind", str(src), str(ro)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot bind-mount here ({done.stderr.decode().strip()})")
    done = subprocess.run(["mount", "-o", "remount,ro,bind", str(ro)], capture_output=True)
    if done.returncode != 0:
        subprocess.run(["umount", str(ro)], check=False)
        pytest.skip(f"cannot make a read-only mount here ({done.stderr.decode().strip()})")
    yield ro
    subprocess.run(["umount", "-l", str(ro)], check=False)


def test_read_only_source(read_only_copy: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ro = read_only_copy
    with pytest.raises(OSError):
        (ro / "probe").write_text("x")
    before = tree_digest(ro)
    capsys.readouterr()
    assert main(["prepare", str(ro), str(tmp_path / "dst"), "--val", "0.25"]) == 0
    assert "Traceback" not in capsys.readouterr().err
    shutil_free = [str(ro / "circle"), str(ro / "square")]
    assert main(["predict", str(_tiny_run(tmp_path, ro / "data")), *shutil_free, "--device", "cpu"]) == 0
    assert main(["stats", str(ro / "data")]) == 0
    # writing INTO the read-only tree is refused with a message, not a traceback
    assert main(["show", str(ro / "data"), "--out", str(ro / "grid.png")]) == 1
    err = capsys.readouterr().err
    assert "grid.png" in err and "Traceback" not in err
    assert tree_digest(ro) == before


def _tiny_run(tmp_path: Path, data: Path) -> Path:
    run = tmp_path / "run"
    assert main(["train", str(data), "--out", str(run), "--model", "small_cnn", "--epochs", "1", "--img-size", "32",
                 "--batch-size", "4", "--device", "cpu"]) == 0
    return run


def test_stats_does_not_hang_on_a_fifo(tmp_path: Path) -> None:
    data = make_split_tree(tmp_path / "data", 4, 2, classes=("circle", "square"))
    os.mkfifo(data / "train" / "circle" / "pipe.png")
    assert stat.S_ISFIFO(os.stat(data / "train" / "circle" / "pipe.png").st_mode)
    done = run_imgclf(["stats", data], timeout=8)
    assert done.returncode in (0, 1)
