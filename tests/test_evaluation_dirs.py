"""Where evaluations go: the run's own val/best in the run folder, every other in its own folder."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from imgclf.artifacts import EvaluationDir, RunDir, data_name
from imgclf.data.folders import fingerprint_data
from imgclf.errors import ImgclfError


def make_run(root: Path, data: Path) -> RunDir:
    run = RunDir(root)
    root.mkdir(parents=True)
    run.config_json.write_text(json.dumps({"data": "relative/elsewhere", "derived": {"data_path": str(data)}}))
    return run


def test_own_val_best_is_the_run_folder_and_everything_else_has_its_own(tmp_path: Path) -> None:
    own = tmp_path / "data"
    own.mkdir()
    run = make_run(tmp_path / "run", own)
    assert run.evaluation_dir(None, "val", "best") == run
    assert run.evaluation_dir(own, "val", "best") == run                 # named explicitly: still the run's own
    assert run.evaluation_dir(tmp_path / "x" / ".." / "data", "val", "best") == run
    folders = {run.evaluation_dir(None, "val", "last"), run.evaluation_dir(None, "test", "best"),
               run.evaluation_dir(own, "test", "last"), run.evaluation_dir(tmp_path / "other", "val", "best")}
    assert len(folders) == 4 and run not in folders
    assert all(isinstance(f, EvaluationDir) and f.root.parent == run.evaluations_dir for f in folders)
    assert run.evaluation_dir(None, "test", "best").root.name == f"{data_name(own)}-test-best"
    assert run.evaluation_dir(own, "test", "best") == run.evaluation_dir(None, "test", "best")


def test_two_folders_with_the_same_name_do_not_collide(tmp_path: Path) -> None:
    run = make_run(tmp_path / "run", tmp_path / "train_data")
    first, second = tmp_path / "a" / "data", tmp_path / "b" / "data"
    a, b = run.evaluation_dir(first, "val", "best"), run.evaluation_dir(second, "val", "best")
    assert a != b
    assert a.root.name.startswith("data-") and b.root.name.startswith("data-")
    assert data_name(first) == data_name(tmp_path / "a" / "." / "data")    # the resolved path decides


def test_odd_split_names_stay_inside_the_evaluations_folder(tmp_path: Path) -> None:
    run = make_run(tmp_path / "run", tmp_path / "data")
    folder = run.evaluation_dir(None, "../../etc", "best")
    assert folder.root.parent == run.evaluations_dir and "/" not in folder.root.name


def test_files_of_an_evaluation_keep_their_names(tmp_path: Path) -> None:
    run = make_run(tmp_path / "run", tmp_path / "data")
    other = run.evaluation_dir(tmp_path / "new", "test", "last")
    for name in ("evaluation_json", "predictions_csv", "confusion_csv", "confusion_png", "mistakes_csv",
                 "enhance_summary_csv", "enhance_figures_dir"):
        assert getattr(other, name).relative_to(other.root) == getattr(run, name).relative_to(run.root)


def test_list_evaluations_finds_the_own_one_first(tmp_path: Path) -> None:
    run = make_run(tmp_path / "run", tmp_path / "data")
    assert run.list_evaluations() == []
    other = run.evaluation_dir(tmp_path / "new", "val", "best")
    other.root.mkdir(parents=True)
    other.evaluation_json.write_text("{}")
    run.evaluation_dir(tmp_path / "new", "test", "best").mistakes_dir.mkdir(parents=True)   # no evaluation.json
    assert run.list_evaluations() == [other]
    run.evaluation_json.write_text("{}")
    assert run.list_evaluations() == [run, other]


def test_a_run_without_a_recorded_data_folder_needs_data(tmp_path: Path) -> None:
    run = RunDir(tmp_path / "run")
    run.root.mkdir()
    run.config_json.write_text(json.dumps({"data": None}))
    assert run.evaluation_dir(None, "val", "best") == run
    with pytest.raises(ImgclfError, match="pass DATA"):
        run.evaluation_dir(None, "test", "best")


def test_fingerprint_uses_the_manifest_else_the_file_list(tmp_path: Path) -> None:
    data = tmp_path / "data"
    (data / "val" / "a").mkdir(parents=True)
    (data / "val" / "a" / "x.png").write_bytes(b"12345")
    first, source = fingerprint_data(data)
    assert source == "file list" and len(first) == 64
    (data / ".DS_Store").write_bytes(b"junk")                              # hidden files do not count
    assert fingerprint_data(data)[0] == first
    (data / "val" / "a" / "x.png").write_bytes(b"123456")
    assert fingerprint_data(data)[0] != first
    (data / "manifest.csv").write_text("source,destination\n")
    assert fingerprint_data(data) == (hashlib.sha256(b"source,destination\n").hexdigest(), "manifest.csv")
