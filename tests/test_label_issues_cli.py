"""``imgclf label-issues``: K fold models, out-of-fold probabilities, flags equal to cleanlab's."""

from __future__ import annotations

import csv
import json
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest

from imgclf.cli import main
from imgclf.training.folds import assign_folds
from tests.conftest import tree_digest

FAST = ["--model", "small_cnn", "--epochs", "2", "--batch-size", "16", "--img-size", "32", "--device", "cpu",
        "--precision", "fp32"]


def read_rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def noisy_data(split_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The shared shapes data with three training images moved into a wrong class folder."""
    data = tmp_path_factory.mktemp("noisy") / "data"
    shutil.copytree(split_data, data)
    for cls, name, wrong in (("circle", "circle_000.png", "square"), ("circle", "circle_001.png", "cross"),
                             ("square", "square_000.png", "circle")):
        (data / "train" / cls / name).rename(data / "train" / wrong / f"flipped_{name}")
    return data


def test_folds_are_stratified_and_seeded() -> None:
    targets = np.repeat([0, 1, 2], [10, 7, 3])
    folds = assign_folds(targets, 3, seed=0)
    for cls in range(3):
        counts = np.bincount(folds[targets == cls], minlength=3)
        assert counts.max() - counts.min() <= 1
    assert np.array_equal(folds, assign_folds(targets, 3, seed=0))
    assert not np.array_equal(folds, assign_folds(targets, 3, seed=1))


def test_auto_jobs_keep_four_cores_per_process(monkeypatch: pytest.MonkeyPatch) -> None:
    from imgclf.commands import label_issues

    for cores, expected in ((2, 1), (8, 2), (64, 5)):
        monkeypatch.setattr(label_issues, "available_cores", lambda cores=cores: cores)
        assert label_issues.resolve_jobs(0, 5, "cpu") == expected
    assert label_issues.resolve_jobs(3, 2, "cpu") == 2   # never more processes than folds


def test_label_issues_in_parallel_folds_match_cleanlab(noisy_data: Path, tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    from cleanlab.filter import find_label_issues as cleanlab_find_label_issues

    before = tree_digest(noisy_data)
    out = tmp_path / "issues"
    assert main(["label-issues", str(noisy_data), "--out", str(out), "--folds", "2", "--jobs", "2", *FAST]) == 0
    assert tree_digest(noisy_data) == before
    summary = json.loads((out / "summary.json").read_text())
    classes = summary["classes"]
    assert summary["num_images"] == 48 and summary["jobs"] == 2 and len(summary["fold_accuracy"]) == 2
    every = read_rows(out / "out_of_fold.csv")
    assert len(every) == 48 and {r["fold"] for r in every} == {"0", "1"}
    probs = np.array([[float(r[f"prob_{c}"]) for c in classes] for r in every])
    given = np.array([classes.index(r["given"]) for r in every])
    np.testing.assert_allclose(probs.sum(axis=1), 1, atol=1e-4)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ranked = cleanlab_find_label_issues(given, probs, n_jobs=1, return_indices_ranked_by="self_confidence")
    flagged = read_rows(out / "label_issues.csv")
    assert [r["path"] for r in flagged] == [every[i]["path"] for i in ranked]
    assert [int(r["label_issue"]) for r in every] == [int(i in set(ranked)) for i in range(len(every))]
    assert summary["num_flagged"] == len(flagged)
    assert (out / "label_issues.png").stat().st_size > 0
    assert f"{len(flagged)} of 48 train images flagged" in capsys.readouterr().err
    assert main(["label-issues", str(noisy_data), "--out", str(out), *FAST]) == 1   # not empty, no --force


def test_label_issues_of_a_run_go_into_the_run(trained_run: Path, split_data: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    assert main(["label-issues", "--run", str(run), "--folds", "2", "--jobs", "1", "--epochs", "1"]) == 0
    summary = json.loads((run / "label-issues" / "train" / "summary.json").read_text())
    config = json.loads((run / "config.json").read_text())
    assert summary["model"] == config["model"] == "small_cnn"
    assert summary["img_size"] == config["derived"]["img_size"] and summary["data"] == str(split_data.resolve())
    assert (run / "label-issues" / "train" / "label_issues.csv").is_file()
    assert main(["label-issues", str(tmp_path), "--run", str(run)]) == 1          # another data folder
    assert main(["label-issues", "--folds", "1"]) == 2                            # no DATA, one fold


@pytest.mark.slow
def test_flipped_digit_labels_are_found(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """5% of the digits' training labels flipped at random: precision and recall of the flags >= 0.7 (-s prints)."""
    from imgclf.commands.demo import write_digits

    write_digits(tmp_path / "raw")
    data = tmp_path / "data"
    assert main(["prepare", str(tmp_path / "raw"), str(data), "--val", "0.2", "--seed", "0"]) == 0
    files = sorted((data / "train").glob("*/*.png"))
    rng = np.random.default_rng(0)
    flipped = set()
    for path in rng.choice(files, size=round(0.05 * len(files)), replace=False):
        wrong = rng.choice([c for c in "0123456789" if c != path.parent.name])
        target = data / "train" / wrong / path.name
        path.rename(target)
        flipped.add(str(target))
    out = tmp_path / "issues"
    assert main(["label-issues", str(data), "--out", str(out), "--model", "small_cnn", "--img-size", "32",
                 "--epochs", "5", "--folds", "5", "--device", "cpu"]) == 0
    flagged = {r["path"] for r in read_rows(out / "label_issues.csv")}
    precision = len(flagged & flipped) / max(1, len(flagged))
    recall = len(flagged & flipped) / len(flipped)
    summary = json.loads((out / "summary.json").read_text())
    with capsys.disabled():
        print(f"\n{len(files)} training digits, {len(flipped)} labels flipped; {len(flagged)} flagged: precision "
              f"{precision:.3f}, recall {recall:.3f}; out-of-fold accuracy {summary['out_of_fold_accuracy']:.4f}; "
              f"{summary['elapsed_s']:.0f} s with {summary['jobs']} processes")
    assert precision >= 0.7 and recall >= 0.7
