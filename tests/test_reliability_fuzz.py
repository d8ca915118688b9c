"""Decoder fuzzing: mutated PNG/JPEG/GIF/BMP/TIFF/WEBP files through decode_image in a worker process.

The worker decodes one file per request and answers with one JSON line; if it dies
(segfault, abort) or stops answering (hang), that is a crash, and a new worker takes
over. Only ImageDecodeError may come out of decode_image.
"""

from __future__ import annotations

import io
import json
import select
import struct
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from conftest import draw_sample
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image
from reliability_helpers import child_env, record_figures

WORKER = r"""
import json, sys, traceback
from pathlib import Path
from imgclf.data.decode import decode_image
from imgclf.errors import ImageDecodeError
for line in sys.stdin:
    path = Path(line.strip())
    try:
        decode_image(path, "keep")
        out = {"outcome": "decoded"}
    except ImageDecodeError as err:
        out = {"outcome": "ImageDecodeError", "names_file": err.path == str(path)}
    except BaseException as err:
        out = {"outcome": "escaped", "type": type(err).__name__, "trace": traceback.format_exc()[-800:]}
    print(json.dumps(out), flush=True)
"""
CASE_TIMEOUT_S = 20.0


def seed_files() -> dict[str, bytes]:
    """One small valid file per format (64x48 noisy shapes)."""
    img = draw_sample("triangle", 3, 48).resize((64, 48))
    out = {}
    for fmt, ext, kwargs in (("PNG", ".png", {}), ("JPEG", ".jpg", {"quality": 85}), ("GIF", ".gif", {}),
                             ("BMP", ".bmp", {}), ("TIFF", ".tif", {"compression": "tiff_lzw"}),
                             ("WEBP", ".webp", {"quality": 80})):
        buf = io.BytesIO()
        (img.convert("P") if fmt == "GIF" else img).save(buf, fmt, **kwargs)
        out[ext] = buf.getvalue()
    return out


SEEDS = seed_files()


class Worker:
    """A decode worker process; restarted after a crash or hang."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.proc: subprocess.Popen[str] | None = None
        self.counts: Counter[str] = Counter()
        self.failures: list[str] = []

    def start(self) -> None:
        self.proc = subprocess.Popen([sys.executable, "-c", WORKER], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL, text=True, env=child_env())

    def decode(self, name: str, data: bytes) -> dict[str, object]:
        if self.proc is None or self.proc.poll() is not None:
            self.start()
        assert self.proc is not None and self.proc.stdin is not None and self.proc.stdout is not None
        path = self.folder / name
        path.write_bytes(data)
        self.proc.stdin.write(f"{path}\n")
        self.proc.stdin.flush()
        ready, _, _ = select.select([self.proc.stdout], [], [], CASE_TIMEOUT_S)
        line = self.proc.stdout.readline() if ready else ""
        if not line:
            hung = not ready
            self.proc.kill()
            self.proc.wait()
            code = self.proc.returncode
            self.proc = None
            result: dict[str, object] = {"outcome": "hang" if hung else f"crash (exit {code})"}
            (self.folder / f"crash-{self.counts['cases']}{Path(name).suffix}").write_bytes(data)
        else:
            result = json.loads(line)
        self.counts["cases"] += 1
        self.counts[str(result["outcome"])] += 1
        if result["outcome"] not in ("decoded", "ImageDecodeError") or result.get("names_file") is False:
            self.failures.append(f"{name}: {result}")
        return result

    def close(self) -> None:
        if self.proc is not None:
            self.proc.stdin.close()  # type: ignore[union-attr]
            self.proc.wait(timeout=30)


@st.composite
def mutated(draw: st.DrawFn) -> tuple[str, bytes]:
    """A seed file with 1-4 mutations: bit flips, truncation, insertion, deletion, length-field corruption."""
    ext = draw(st.sampled_from(sorted(SEEDS)))
    data = bytearray(SEEDS[ext])
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["flip", "truncate", "insert", "delete", "length", "overwrite"]))
        pos = draw(st.integers(0, max(0, len(data) - 1)))
        if op == "flip" and data:
            data[pos] ^= 1 << draw(st.integers(0, 7))
        elif op == "truncate":
            del data[pos:]
        elif op == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=64))
        elif op == "delete":
            del data[pos:pos + draw(st.integers(1, 64))]
        elif op == "length":
            # PNG chunk lengths sit at 8 + k*(12+len); elsewhere any 4 bytes may be a length or a size
            offsets = png_length_offsets(bytes(data)) if ext == ".png" else [pos]
            at = draw(st.sampled_from(offsets)) if offsets else pos
            value = draw(st.sampled_from([0, 1, 0x7FFFFFFF, 0xFFFFFFFF, 0x10000, len(data) * 4]))
            data[at:at + 4] = struct.pack(">I", value)
        elif op == "overwrite":
            chunk = draw(st.binary(min_size=1, max_size=16))
            data[pos:pos + len(chunk)] = chunk
    return ext, bytes(data)


def png_length_offsets(data: bytes) -> list[int]:
    offsets, at = [], 8
    while at + 8 <= len(data):
        offsets.append(at)
        at += 12 + struct.unpack(">I", data[at:at + 4])[0]
    return offsets


def run_fuzz(tmp_path: Path, examples: int, label: str) -> None:
    worker = Worker(tmp_path)
    started = time.perf_counter()

    @settings(max_examples=examples, deadline=None, database=None, derandomize=False,
              suppress_health_check=list(HealthCheck))
    @given(case=mutated())
    def one(case: tuple[str, bytes]) -> None:
        ext, data = case
        worker.decode(f"case{ext}", data)

    try:
        one()
    finally:
        worker.close()
    counts = dict(worker.counts)
    record_figures(label, **counts, failures=len(worker.failures), seconds=round(time.perf_counter() - started, 1))
    assert not worker.failures, "\n".join(worker.failures[:5])
    assert counts["cases"] >= examples * 0.9
    assert counts.get("decoded", 0) > 0 and counts.get("ImageDecodeError", 0) > 0   # both paths exercised


def test_seeds_decode(tmp_path: Path) -> None:
    worker = Worker(tmp_path)
    try:
        assert all(worker.decode(f"seed{ext}", data)["outcome"] == "decoded" for ext, data in SEEDS.items())
    finally:
        worker.close()


def test_fuzz_decoder_quick(tmp_path: Path) -> None:
    """~200 mutated files: only ImageDecodeError escapes, no crash, no hang."""
    run_fuzz(tmp_path, 200, "fuzz_quick")


@pytest.mark.slow
def test_fuzz_decoder_long(tmp_path: Path) -> None:
    """20,000 mutated files."""
    run_fuzz(tmp_path, 20000, "fuzz_long")
