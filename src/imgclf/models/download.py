"""Download a weights file into a cache, all or nothing, checked against its hash.

torch.hub's convention names a file ``<name>-<first hex digits of its sha256>.<ext>``: the
digest of what arrived must start with them. The bytes stream into a temp file beside the
destination (:func:`imgclf.io.atomic_path`), which is renamed only after the length announced
by the server and the hash both match: a failed, truncated or corrupted transfer leaves nothing
in the cache. ``--offline`` or ``IMGCLF_OFFLINE=1`` forbid any download.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import re
import sys
import urllib.error
import urllib.request
from pathlib import Path

from imgclf.errors import ImgclfError
from imgclf.io import atomic_path

HASH_IN_NAME = re.compile(r"-([a-f0-9]{6,64})\.")   # torch.hub: <name>-<sha256 prefix>.<ext>
CHUNK_BYTES = 1 << 16
TIMEOUT_S = 30.0


class DownloadError(ImgclfError):
    """A download that did not produce the expected file; nothing was written."""


def offline_mode(flag: bool = False) -> bool:
    """``--offline`` or ``IMGCLF_OFFLINE`` set to anything but empty or 0."""
    return flag or os.environ.get("IMGCLF_OFFLINE", "").strip() not in ("", "0")


def _stream(url: str, tmp: Path, name: str) -> tuple[int, int, str]:
    """(bytes received, bytes announced or 0, sha256 hex) of ``url`` written to ``tmp``."""
    from tqdm import tqdm

    digest, received = hashlib.sha256(), 0
    with urllib.request.urlopen(url, timeout=TIMEOUT_S) as response, open(tmp, "wb") as f:
        announced = int(response.headers.get("Content-Length") or 0)
        with tqdm(total=announced or None, unit="B", unit_scale=True, desc=name, leave=False,
                  disable=not sys.stderr.isatty()) as bar:
            while chunk := response.read(CHUNK_BYTES):
                f.write(chunk)
                digest.update(chunk)
                received += len(chunk)
                bar.update(len(chunk))
    return received, announced, digest.hexdigest()


def download_file(url: str, path: Path, what: str = "--weights") -> Path:
    """Fetch ``url`` into ``path`` (hash-checked when the name carries a hash prefix); DownloadError otherwise."""
    path = Path(path)
    expected = HASH_IN_NAME.search(path.name)
    advice = f"; nothing was written. Retry, or download {url} by hand and place it at {path}"
    with atomic_path(path) as tmp:
        try:
            received, announced, digest = _stream(url, tmp, path.name)
        except urllib.error.HTTPError as err:
            raise DownloadError(f"{what}: {url} answered HTTP {err.code} {err.reason}{advice}") from None
        except (urllib.error.URLError, http.client.HTTPException, OSError) as err:
            reason = getattr(err, "reason", None) or err
            raise DownloadError(f"{what}: downloading {url} failed ({reason}){advice}") from None
        if announced and received != announced:
            raise DownloadError(f"{what}: the transfer of {url} was truncated ({received} of {announced} bytes)"
                                f"{advice}")
        if expected and not digest.startswith(expected.group(1)):
            raise DownloadError(f"{what}: {url} is corrupted (sha256 {digest[:16]}..., the file name says "
                                f"{expected.group(1)}...){advice}")
    return path
