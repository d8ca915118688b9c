"""Data safety: every command leaves the user's data byte-identical, and never overwrites a
user's file without --force."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from conftest import make_class_folders, tree_digest
from reliability_helpers import record_figures

from imgclf.cli import main


def snapshot(root: Path) -> tuple[dict[str, str], set[str]]:
    return tree_digest(root), {str(p.relative_to(root)) for p in root.rglob("*")}


def test_every_command_leaves_the_data_untouched(trained_run: Path, split_data: Path, tmp_path: Path) -> None:
    raw = make_class_folders(tmp_path / "raw", ("circle", "square"), per_class=5)
    data = tmp_path / "data"
    shutil.copytree(split_data, data)
    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    watched = {"raw": raw, "data": data, "shared split_data": split_data}
    before = {name: snapshot(root) for name, root in watched.items()}
    commands = {
        "prepare": ["prepare", str(raw), str(tmp_path / "prepared")],
        "stats": ["stats", str(data)],
        "show": ["show", str(data), "--out", str(tmp_path / "grid.png")],
        "show --augmented": ["show", str(data), "--augmented", "--out", str(tmp_path / "grid2.png")],
        "train": ["train", str(data), "--out", str(tmp_path / "run2"), "--model", "small_cnn", "--epochs", "1",
                  "--img-size", "32", "--batch-size", "16", "--device", "cpu"],
        "evaluate": ["evaluate", str(run), str(data), "--device", "cpu"],
        "predict": ["predict", str(run), str(data / "val"), "--csv", str(tmp_path / "p.csv"), "--device", "cpu"],
        "mistakes": ["mistakes", str(run), str(data), "--device", "cpu"],
        "enhance": ["enhance", str(run), "--on", "val", "--figures", "1", "--device", "cpu"],
    }
    for name, argv in commands.items():
        assert main(argv) in (0, 1), name   # 1: e.g. no mistakes to enhance; never a crash
        for label, root in watched.items():
            assert snapshot(root) == before[label], f"{name} changed {label}"
    files = sum(len(b[0]) for b in before.values())
    record_figures("data_safety", commands=len(commands), files_watched=files, files_modified=0, files_lost=0,
                   files_added=0)


def test_outputs_never_overwrite_a_users_file(trained_run: Path, split_data: Path, tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    mine = b"the user's own file"
    grid, csv_file = tmp_path / "existing.png", tmp_path / "existing.csv"
    out, dst = tmp_path / "taken", tmp_path / "foreign"
    for path in (grid, csv_file, out / "notes.txt", dst / "thesis.docx"):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(mine)
    raw = make_class_folders(tmp_path / "raw", ("circle", "square"), per_class=5)
    refused = {
        "show": ["show", str(split_data), "--out", str(grid)],
        "predict": ["predict", str(trained_run), str(split_data / "val"), "--csv", str(csv_file), "--device", "cpu"],
        "train": ["train", str(split_data), "--out", str(out), "--model", "small_cnn", "--epochs", "1"],
        "prepare": ["prepare", str(raw), str(dst)],
    }
    for name, argv in refused.items():
        capsys.readouterr()
        assert main(argv) == 1, name
        err = capsys.readouterr().err
        assert "--force" in err and "Traceback" not in err, (name, err[-500:])
    for path in (grid, csv_file, out / "notes.txt", dst / "thesis.docx"):
        assert path.read_bytes() == mine, path
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]
    assert main(["prepare", str(raw), str(dst), "--force"]) == 0     # --force keeps the foreign file
    assert (dst / "thesis.docx").read_bytes() == mine
    assert main(["show", str(split_data), "--out", str(grid), "--force"]) == 0
    assert grid.read_bytes() != mine
    record_figures("no_overwrite", refusals=len(refused), user_files_overwritten=0)
