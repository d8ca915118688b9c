"""--backend auto|torch|onnxruntime: same preprocessing, same numbers, the faster engine picked and cached."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from imgclf.cli import main
from imgclf.deploy import backends

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")


@pytest.fixture
def run(trained_run: Path, tmp_path: Path) -> Path:
    """A private copy of the shared run (the onnxruntime backend writes RUN/export/)."""
    return Path(shutil.copytree(trained_run, tmp_path / "run"))


def probabilities(csv_path: Path) -> np.ndarray:
    with open(csv_path, newline="") as f:
        rows = list(csv.DictReader(f))
    return np.array([[float(v) for k, v in row.items() if k.startswith("prob_")] for row in rows])


def test_onnxruntime_backend_gives_torch_numbers(run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # fp32 on both sides: on a bf16-fast CPU `--precision auto` would evaluate torch in bf16
    assert main(["evaluate", str(run), "--backend", "torch", "--precision", "fp32"]) == 0
    torch_probs = probabilities(run / "predictions.csv")
    capsys.readouterr()
    assert main(["evaluate", str(run), "--backend", "onnxruntime"]) == 0
    err = capsys.readouterr().err
    assert "exporting best.safetensors to ONNX" in err and "backend: onnxruntime" in err
    onnx_probs = probabilities(run / "predictions.csv")
    assert (onnx_probs.argmax(1) == torch_probs.argmax(1)).all() and np.abs(onnx_probs - torch_probs).max() <= 1e-4
    assert main(["mistakes", str(run), "--backend", "onnxruntime"]) == 0
    assert main(["enhance", str(run), "--on", "val", "--figures", "0", "--backend", "onnxruntime"]) == 0
    assert "exporting" not in capsys.readouterr().err   # the export of this checkpoint is reused
    sidecar = run / "export" / "onnx-best" / "imgclf-export.json"
    data = json.loads(sidecar.read_text())
    data["source"]["weights_sha256"] = "0" * 64   # as if the checkpoint had been retrained since
    sidecar.write_text(json.dumps(data))
    assert main(["predict", str(run), str(run.parent), "--backend", "onnxruntime"]) in (0, 1)
    assert "exporting" in capsys.readouterr().err


def test_auto_keeps_small_jobs_on_torch_and_says_why(run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["evaluate", str(run)]) == 0
    assert "backend auto: torch (no ONNX export of this checkpoint yet; 15 images do not pay for one)" \
        in capsys.readouterr().err
    assert not (run / "export").exists()


def test_auto_measures_once_per_machine_and_model(run: Path, capsys: pytest.CaptureFixture[str],
                                                  monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setattr(backends, "AUTO_EXPORT_MIN_IMAGES", 10)
    assert main(["evaluate", str(run)]) == 0
    first = capsys.readouterr().err
    assert "measured now" in first
    cache = json.loads((tmp_path / "cache" / "imgclf" / "backends.json").read_text())
    (key, verdict), = cache.items()
    assert "small_cnn 3x32" in key and "batch 64" in key
    speeds = verdict["images_per_s"]
    assert set(speeds) == {"torch", "onnxruntime"} and verdict["choice"] == max(speeds, key=speeds.get)
    assert f"backend auto: {verdict['choice']}" in first
    assert main(["evaluate", str(run)]) == 0
    assert "measured earlier, cached in" in capsys.readouterr().err
