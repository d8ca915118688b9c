"""Hostile checkpoints: code-running pickles, legacy formats, corrupt and bloated files, bad metadata.

Through the library (load_weights, load_state, load_model_file) and the CLI (predict,
evaluate, inspect, train --resume, train --pretrained): one clear error line naming
the file, exit 1, and the marker file that the payload would create never appears.
"""

from __future__ import annotations

import io
import json
import pickle
import re
import shutil
import struct
import sys
import tarfile
from pathlib import Path

import pytest
import torch
from reliability_helpers import REPO, record_figures, run_imgclf, run_python

from imgclf.artifacts import RunDir
from imgclf.cli import main
from imgclf.engine.checkpoint import load_state, load_weights, save_weights
from imgclf.engine.inference import load_model_file
from imgclf.errors import CheckpointError

MARKER_CODE = "open({marker!r}, 'w').write('code ran')"


class Payload:
    """Unpickling this runs ``exec(MARKER_CODE)``: it creates the marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        import builtins

        return (builtins.exec, (MARKER_CODE.format(marker=str(self.marker)),))


def hostile_files(marker: Path) -> dict[str, bytes]:
    """name -> bytes of every code-running variant."""
    state = {"step": 1, "model": {}, "optimizer": Payload(marker)}
    out = {}
    buf = io.BytesIO()
    torch.save(state, buf)
    out["zip_pickle"] = buf.getvalue()
    buf = io.BytesIO()
    torch.save(state, buf, _use_new_zipfile_serialization=False)
    out["legacy_pickle"] = buf.getvalue()
    out["raw_pickle"] = pickle.dumps(state, protocol=2)
    out["raw_pickle_p5"] = pickle.dumps(Payload(marker), protocol=5)
    tar_buf = io.BytesIO()
    with tarfile.open(fileobj=tar_buf, mode="w") as tar:  # torch's pre-1.0 tar checkpoint layout
        for name, data in (("sys_info", pickle.dumps({"protocol_version": 1001, "little_endian": True,
                                                      "type_sizes": {"short": 2, "int": 4, "long": 8}})),
                           ("pickle", pickle.dumps(state, protocol=2)), ("storages", pickle.dumps(0)),
                           ("tensors", pickle.dumps(0))):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    out["legacy_tar"] = tar_buf.getvalue()
    return out


@pytest.fixture
def run_copy(trained_run: Path, tmp_path: Path) -> Path:
    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    return run


def assert_one_error_line(err: str, command: str, path: Path) -> None:
    lines = [ln for ln in err.splitlines() if ln.startswith(f"imgclf {command}: error:")]
    assert len(lines) == 1, err[-2000:]
    assert path.name in lines[0], lines[0]
    assert "Traceback" not in err


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
@pytest.mark.parametrize("variant", ["zip_pickle", "legacy_pickle", "raw_pickle", "raw_pickle_p5", "legacy_tar"])
def test_code_running_pickles_are_refused_everywhere(run_copy: Path, tmp_path: Path, variant: str,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    marker = tmp_path / "pwned"
    data = hostile_files(marker)[variant]
    run = RunDir(run_copy)
    attempts = 0
    # as any weights file name a user may receive
    for name in ("model.pt", "model.ckpt", "model.safetensors", "model.pth"):
        path = tmp_path / name
        path.write_bytes(data)
        with pytest.raises(CheckpointError, match=re.escape(name)):
            load_weights(path)
        with pytest.raises(CheckpointError, match=re.escape(name)):
            load_model_file(path, device="cpu")
        attempts += 2
    # as the resume state
    with pytest.raises(CheckpointError, match="hostile.state.pt"):
        (tmp_path / "hostile.state.pt").write_bytes(data)
        load_state(tmp_path / "hostile.state.pt")
    shutil.copyfile(tmp_path / "hostile.state.pt", run.resume_state)
    for argv, command in ((["train", "--resume", str(run.root)], "train"), (["inspect", str(run.root)], "inspect")):
        capsys.readouterr()
        assert main(argv) == 1
        assert_one_error_line(capsys.readouterr().err, command, run.resume_state)
        attempts += 1
    # as the weights of the run
    for which in ("best", "last"):
        run.weights(which).write_bytes(data)
    for argv, command, which in ((["predict", str(run.root), str(run_copy)], "predict", "best"),
                                 (["evaluate", str(run.root)], "evaluate", "best"),
                                 (["inspect", str(run.root), "--checkpoint", "last"], "inspect", "last")):
        capsys.readouterr()
        assert main(argv) == 1
        assert_one_error_line(capsys.readouterr().err, command, run.weights(which))
        attempts += 1
    assert not marker.exists(), "the pickle payload ran"
    record_figures(f"hostile_pickle_{variant}", attempts=attempts + 1, code_executions=0)


def test_pretrained_pickle_is_refused(split_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    marker = tmp_path / "pwned"
    weights = tmp_path / "weights.pth"
    weights.write_bytes(hostile_files(marker)["zip_pickle"])
    code = main(["train", str(split_data), "--out", str(tmp_path / "r"), "--model", "small_cnn", "--epochs", "1",
                 "--pretrained", str(weights), "--img-size", "32"])
    assert code == 1 and not marker.exists()
    assert "weights.pth" in capsys.readouterr().err


def test_cli_subprocess_exit_code_and_one_line(run_copy: Path, tmp_path: Path) -> None:
    """A real ``python -m imgclf predict`` on a pickle renamed .safetensors: exit 1, one line, no code run."""
    marker = tmp_path / "pwned"
    run = RunDir(run_copy)
    run.weights("best").write_bytes(hostile_files(marker)["zip_pickle"])
    done = run_imgclf(["predict", run.root, run_copy], timeout=120)
    assert done.returncode == 1
    assert_one_error_line(done.stderr, "predict", run.weights("best"))
    assert not marker.exists()


def safetensors_with(tmp_path: Path, name: str, meta: object) -> Path:
    state, _ = load_weights(RunDir(tmp_path / "run").weights("best"))
    path = tmp_path / name
    save_weights(path, state, meta)  # type: ignore[arg-type]
    return path


def bad_meta_cases(good: dict[str, object]) -> dict[str, object]:
    drop = lambda key: {k: v for k, v in good.items() if k != key}  # noqa: E731
    return {
        "lacks_model": drop("model"), "lacks_classes": drop("classes"), "lacks_mean": drop("mean"),
        "list_not_object": [1, 2, 3], "num_classes_text": {**good, "num_classes": "3"},
        "num_classes_huge": {**good, "num_classes": 10 ** 12}, "classes_not_list": {**good, "classes": 5},
        "classes_wrong_count": {**good, "classes": ["a"]}, "mean_text": {**good, "mean": "abc"},
        "std_zero": {**good, "std": [0.0, 0.0, 0.0]}, "img_size_negative": {**good, "img_size": -4},
        "in_channels_7": {**good, "in_channels": 7}, "model_unknown": {**good, "model": "resnet1"},
        "model_os_system": {**good, "model": "os:system"}, "model_subprocess": {**good, "model": "subprocess:Popen"},
        "model_side_effect_import": {**good, "model": "this:s"},
        "model_not_a_module": {**good, "model": "torch.nn.functional:relu"},
        "preprocess_unknown": {**good, "preprocess": "rm -rf"}, "preprocess_list": {**good, "preprocess": ["x"]},
    }


def test_bad_metadata_is_a_clear_error(run_copy: Path, tmp_path: Path) -> None:
    _, good = load_weights(RunDir(run_copy).weights("best"))
    cases = bad_meta_cases(good)
    for case, meta in cases.items():
        path = safetensors_with(tmp_path, f"{case}.safetensors", meta)
        with pytest.raises(CheckpointError, match=re.escape(path.name)):
            load_model_file(path, device="cpu")
    raw = tmp_path / "not_json.safetensors"
    from safetensors.torch import save_file
    save_file({"w": torch.zeros(2)}, str(raw), metadata={"imgclf": "{not json"})
    with pytest.raises(CheckpointError, match="not_json.safetensors"):
        load_weights(raw)
    assert "this" not in sys.modules, "a module named in checkpoint metadata was imported"
    record_figures("bad_metadata", cases=len(cases) + 1, clear_errors=len(cases) + 1)


def test_bloated_and_lying_safetensors_headers(tmp_path: Path) -> None:
    cases = {
        "huge_length": struct.pack("<Q", 2 ** 62) + b"{}",
        "length_past_eof": struct.pack("<Q", 50_000_000) + b'{"__metadata__":{}}',
        "header_not_json": struct.pack("<Q", 8) + b"not json",
        "offsets_past_eof": _header({"w": {"dtype": "F32", "shape": [1000, 1000], "data_offsets": [0, 4_000_000]}}),
        "shape_lies": _header({"w": {"dtype": "F32", "shape": [10 ** 9, 10 ** 9], "data_offsets": [0, 16]}}) + bytes(16),
        "bad_dtype": _header({"w": {"dtype": "X99", "shape": [2], "data_offsets": [0, 8]}}) + bytes(8),
        "overlap": _header({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
                            "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}}) + bytes(12),
        "empty": b"",
        "seven_bytes": b"\x01" * 7,
    }
    for name, data in cases.items():
        path = tmp_path / f"{name}.safetensors"
        path.write_bytes(data)
        with pytest.raises(CheckpointError, match=re.escape(path.name)):
            load_weights(path)
    record_figures("bloated_headers", cases=len(cases), clear_errors=len(cases))


def _header(obj: dict[str, object]) -> bytes:
    text = json.dumps(obj).encode()
    return struct.pack("<Q", len(text)) + text


MUTATE = r"""
import json, random, sys, traceback
from pathlib import Path
from imgclf.engine.checkpoint import load_state, load_weights
from imgclf.engine.inference import load_model_file
from imgclf.errors import CheckpointError
source, kind, cases, seed, folder = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), Path(sys.argv[5])
data = source.read_bytes()
rng = random.Random(seed)
counts = {"cases": 0, "loaded": 0, "CheckpointError": 0, "escaped": 0}
bad = []
for i in range(cases):
    buf = bytearray(data)
    if rng.random() < 0.5:
        for _ in range(rng.randint(1, 8)):
            pos = rng.randrange(len(buf)) if rng.random() < 0.7 else rng.randrange(min(len(buf), 4096))
            buf[pos] ^= 1 << rng.randrange(8)
    else:
        del buf[rng.randrange(len(buf)):]
    path = folder / (f"m{i}.safetensors" if kind == "weights" else f"m{i}.state.pt")
    path.write_bytes(bytes(buf))
    counts["cases"] += 1
    try:
        if kind == "weights":
            load_model_file(path, device="cpu", precision="fp32")
        else:
            load_state(path)
        counts["loaded"] += 1
    except CheckpointError as err:
        counts["CheckpointError"] += 1
        if path.name not in str(err):
            bad.append(f"{path.name}: error does not name the file: {err}")
    except BaseException as err:
        counts["escaped"] += 1
        bad.append(f"{path.name}: {type(err).__name__}: {err}"[:300])
    path.unlink()
print(json.dumps({"counts": counts, "bad": bad[:5]}))
"""


def mutate_checkpoints(run: Path, tmp_path: Path, cases: int, label: str) -> None:
    totals: dict[str, int] = {}
    for kind, source in (("weights", RunDir(run).weights("best")), ("state", RunDir(run).resume_state)):
        done = run_python(MUTATE, timeout=900, args=[source, kind, cases, 1234, tmp_path])
        assert done.returncode == 0, f"{kind}: the loader process crashed (exit {done.returncode}): {done.stderr[-1500:]}"
        result = json.loads(done.stdout.splitlines()[-1])
        assert result["bad"] == [], result["bad"]
        assert result["counts"]["CheckpointError"] > 0
        for key, value in result["counts"].items():
            totals[f"{kind}_{key}"] = value
    record_figures(label, **totals, crashes=0)


def test_bit_flips_and_truncations_of_valid_checkpoints(run_copy: Path, tmp_path: Path) -> None:
    """100 mutations each of best.safetensors and last.state.pt: loaded, or a CheckpointError naming the file."""
    mutate_checkpoints(run_copy, tmp_path, 100, "checkpoint_mutations_quick")


@pytest.mark.slow
def test_bit_flips_and_truncations_long(run_copy: Path, tmp_path: Path) -> None:
    mutate_checkpoints(run_copy, tmp_path, 2000, "checkpoint_mutations_long")


def test_no_unsafe_loading_anywhere_in_the_source() -> None:
    """No weights_only=False, no pickle/dill/marshal loads, every torch.load has weights_only=True."""
    offenders = []
    for path in sorted((REPO / "src").rglob("*.py")):
        text = path.read_text(encoding="utf-8")
        for pattern in (r"weights_only\s*=\s*False", r"\bpickle\.loads?\(", r"\bdill\b", r"\bmarshal\.loads?\(",
                        r"\bcloudpickle\b", r"torch\.serialization\.add_safe_globals", r"\bjoblib\.load\("):
            offenders += [f"{path.relative_to(REPO)}: {pattern}" for _ in re.finditer(pattern, text)]
        for call in re.finditer(r"torch\.load\(([^)]*)\)", text):
            if not re.search(r"weights_only\s*=\s*True", call.group(1)):
                offenders.append(f"{path.relative_to(REPO)}: torch.load without weights_only=True")
    assert offenders == []
