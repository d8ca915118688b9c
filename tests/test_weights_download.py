"""--weights downloads through torchvision's weights API into the torch hub cache, all or nothing.

A real HTTP server on 127.0.0.1 (started here) serves a small weights file; TORCH_HOME points
into tmp_path. Nothing goes beyond 127.0.0.1 and nothing is written outside the cache folder.
"""

from __future__ import annotations

import hashlib
import io
import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import torch

from imgclf.cli import main
from imgclf.errors import ImgclfError
from imgclf.models.download import DownloadError, download_file
from imgclf.models.pretrained import load_matching, load_torchvision_weights, read_state_dict
from imgclf.models.registry import create_model

SERVED: dict[str, bytes] = {}


class Handler(BaseHTTPRequestHandler):
    """GET /<name>: the file; GET /truncated/<name>: announces the full length, sends half, hangs up."""

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        name = self.path.rsplit("/", 1)[-1]
        if name not in SERVED:
            self.send_error(404)
            return
        data = SERVED[name]
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data[: len(data) // 2] if self.path.startswith("/truncated/") else data)
        self.close_connection = True

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def weights_file(model: str = "small_cnn", num_classes: int = 3) -> tuple[bytes, str, dict[str, torch.Tensor]]:
    """(bytes, torch.hub-style name with the sha256 prefix, state_dict) of a real state_dict."""
    state = create_model(model, num_classes).state_dict()
    buf = io.BytesIO()
    torch.save(state, buf)
    data = buf.getvalue()
    return data, f"{model}-{hashlib.sha256(data).hexdigest()[:8]}.pth", state


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.delenv("IMGCLF_OFFLINE", raising=False)
    return tmp_path / "torch" / "hub" / "checkpoints"


def files_under(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def test_download_success_is_hash_checked_and_loads(server: str, cache: Path, tmp_path: Path) -> None:
    data, name, state = weights_file()
    SERVED[name] = data
    path = download_file(f"{server}/{name}", cache / name)
    assert path.read_bytes() == data and files_under(tmp_path) == [f"torch/hub/checkpoints/{name}"]
    model = create_model("small_cnn", 3)
    report = load_matching(model, read_state_dict(path))
    assert not report.missing and torch.equal(model.state_dict()["features.0.weight"], state["features.0.weight"])


@pytest.mark.parametrize("case", ["hash mismatch", "truncated", "server down", "not found"])
def test_failed_downloads_leave_nothing_and_name_url_and_path(case: str, server: str, cache: Path,
                                                              tmp_path: Path) -> None:
    data, name, _ = weights_file()
    if case == "hash mismatch":   # the bytes do not start with the hash in the name: a corrupted file
        name = name.replace(name.split("-")[1][:8], "00000000")
    SERVED[name] = data
    url = f"{server}/{'truncated/' if case == 'truncated' else ''}{name}"
    if case == "server down":
        with socket.socket() as s:   # a port nobody listens on
            s.bind(("127.0.0.1", 0))
            url = f"http://127.0.0.1:{s.getsockname()[1]}/{name}"
    if case == "not found":
        url = f"{server}/missing-12345678.pth"
    expected = {"hash mismatch": "corrupted", "truncated": "truncated", "server down": "failed",
                "not found": "HTTP 404"}[case]
    with pytest.raises(DownloadError, match=expected) as info:
        download_file(url, cache / name)
    assert url in str(info.value) and str(cache / name) in str(info.value)
    assert files_under(tmp_path) == []   # no partial file, no temp file, nowhere


def test_offline_forbids_the_download(cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    model = create_model("resnet18", 3)
    with pytest.raises(ImgclfError, match="downloads are off.*resnet18-f37072fd.pth.*place it at .*checkpoints"):
        load_torchvision_weights(model, "resnet18", "DEFAULT", offline=True)
    monkeypatch.setenv("IMGCLF_OFFLINE", "1")
    with pytest.raises(ImgclfError, match="https://download.pytorch.org/models/resnet18-f37072fd.pth"):
        load_torchvision_weights(model, "resnet18", "IMAGENET1K_V1")
    assert files_under(tmp_path) == []


def test_train_with_weights_downloads_and_follows_the_weights(server: str, cache: Path, split_data: Path,
                                                              tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    """imgclf train --weights DEFAULT, with torchvision's URL pointed at the local server."""
    import torchvision

    data, name, state = weights_file("squeezenet1_1", 1000)
    SERVED[name] = data
    entry = torchvision.models.get_model_weights("squeezenet1_1").DEFAULT
    monkeypatch.setattr(entry.value, "url", f"{server}/{name}")
    run = tmp_path / "run"
    args = ["train", str(split_data), "--model", "squeezenet1_1", "--weights", "DEFAULT", "--epochs", "1",
            "--batch-size", "16", "--img-size", "64", "--out", str(run)]
    assert main([*args, "--offline"]) == 1
    assert "downloads are off" in capsys.readouterr().err and not (cache / name).exists()
    assert main(args) == 0
    assert (cache / name).read_bytes() == data
    config = json.loads((run / "config.json").read_text())
    # the preset: the weights' normalisation and a lower lr; --img-size was given, so it stays; SqueezeNet's
    # head is a conv, so there is no separate head lr
    assert config["img_size"] == 64 and config["normalize"] == "imagenet"
    assert config["lr"] == pytest.approx(0.005) and config["head_lr"] == 0.0
    assert config["derived"]["weights_preset"] == {"img_size": 224, "lr": pytest.approx(0.005), "normalize": "imagenet"}
    assert "--weights DEFAULT: loaded" in capsys.readouterr().err


def test_weights_preset_fills_only_what_the_user_did_not_set() -> None:
    from imgclf.config import TrainConfig, build_config

    plain = build_config(TrainConfig, {"data": Path("d"), "weights": "DEFAULT"})
    assert (plain.img_size, plain.normalize, plain.lr, plain.head_lr) == (224, "imagenet", pytest.approx(0.005),
                                                                           pytest.approx(0.05))
    given = build_config(TrainConfig, {"data": Path("d"), "weights": "DEFAULT", "lr": 0.05, "img_size": 112},
                         file_values={"normalize": "auto"})
    assert (given.img_size, given.normalize, given.lr, given.head_lr) == (112, "auto", 0.05, pytest.approx(0.5))
    untouched = build_config(TrainConfig, {"data": Path("d")})
    assert (untouched.img_size, untouched.normalize, untouched.head_lr) == (0, "auto", 0.0)
