"""Small HTML building blocks: escaping, numbers, sortable tables, embedded images.

Every string that comes from a file goes through :func:`esc`; every image becomes a
``data:`` URI, so the page is one file that needs no server and no network.
"""

from __future__ import annotations

import base64
import html
import io
import shlex
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from imgclf.errors import ImgclfError

MAX_RAW_IMAGE_BYTES = 1_500_000     # larger figures are downscaled before embedding
MAX_FIGURE_SIDE_PX = 1800
THUMB_SIDE_PX = 176

_MAGIC = ((b"\x89PNG\r\n\x1a\n", "image/png"), (b"\xff\xd8\xff", "image/jpeg"), (b"GIF8", "image/gif"))


def esc(value: Any) -> str:
    """HTML-escape any value (quotes included) for text and attribute positions."""
    return html.escape(str(value), quote=True)


def code(text: str) -> str:
    return f"<code>{esc(text)}</code>"


def command_for(verb: str, run_arg: str, extra: str = "") -> str:
    """The shell command that fills a section, e.g. ``imgclf mistakes runs/x-1``."""
    return f"imgclf {verb} {shlex.quote(run_arg)}{extra}"


def hint(what: str, verb: str, run_arg: str) -> str:
    """The 'not run yet' paragraph naming the command that fills a section."""
    return (f'<p class="hint"><strong>Not run yet:</strong> {esc(what)}. '
            f"Run {code(command_for(verb, run_arg))} to fill this section.</p>")


def note(text_html: str, cls: str = "note") -> str:
    return f'<p class="{cls}">{text_html}</p>'


def problem(text: str) -> str:
    return f'<p class="problem"><strong>Problem:</strong> {esc(text)}</p>'


# --------------------------------------------------------------------------- numbers

def fmt_pct(value: float | None, digits: int = 1) -> str:
    return "–" if value is None else f"{100.0 * value:.{digits}f}%"


def fmt_num(value: float | None, digits: int = 3) -> str:
    if value is None:
        return "–"
    if float(value).is_integer() and abs(value) < 1e15:
        return f"{int(value):,}"
    return f"{value:.{digits}g}" if abs(value) < 1e-3 or abs(value) >= 1e5 else f"{value:.{digits}f}"


def fmt_seconds(value: float | None) -> str:
    if value is None:
        return "–"
    minutes, seconds = divmod(float(value), 60.0)
    hours, minutes = divmod(minutes, 60.0)
    if hours:
        return f"{int(hours)} h {int(minutes)} min"
    return f"{int(minutes)} min {seconds:.0f} s" if minutes else f"{seconds:.1f} s"


# --------------------------------------------------------------------------- tables

def td(text: Any, cls: str = "") -> str:
    """A text cell (escaped)."""
    attrs = f' class="{cls}"' if cls else ""
    return f"<td{attrs}>{esc(text)}</td>"


def td_html(inner_html: str, sort: float | str | None = None, cls: str = "") -> str:
    """A cell whose content is already HTML (callers escape what they put in)."""
    attrs = f' class="{cls}"' if cls else ""
    if sort is not None:
        attrs += f' data-sort="{esc(sort)}"'
    return f"<td{attrs}>{inner_html}</td>"


def num_td(value: float | None, text: str | None = None, cls: str = "") -> str:
    """A right-aligned number cell that sorts by value (blanks sort first)."""
    shown = text if text is not None else fmt_num(value)
    sort = "" if value is None else repr(float(value))
    return f'<td class="num{" " + cls if cls else ""}" data-sort="{sort}">{esc(shown)}</td>'


def table(headers: Sequence[str], rows: Iterable[Sequence[str]], foot: Sequence[str] | None = None,
          caption: str = "", numeric: Sequence[bool] | None = None, cls: str = "sortable") -> str:
    """A table of pre-rendered ``<td>`` cells; click a header to sort (see the page script)."""
    numeric = numeric or [False] * len(headers)
    head = "".join(f'<th scope="col"{" class=num" if n else ""} tabindex="0">{esc(h)}</th>'
                   for h, n in zip(headers, numeric))
    body = "".join(f"<tr>{''.join(cells)}</tr>" for cells in rows)
    parts = [f'<div class="table-wrap"><table class="{cls}">']
    if caption:
        parts.append(f"<caption>{esc(caption)}</caption>")
    parts.append(f"<thead><tr>{head}</tr></thead><tbody>{body}</tbody>")
    if foot:
        parts.append(f"<tfoot><tr>{''.join(foot)}</tr></tfoot>")
    parts.append("</table></div>")
    return "".join(parts)


def bar_td(value: float | None, fraction: float, text: str) -> str:
    """A number cell with a small horizontal bar (``fraction`` of the track) left of the number."""
    width = 100.0 * min(1.0, max(0.0, fraction))
    inner = (f'<span class="track"><span class="bar" style="width:{width:.1f}%"></span></span>'
             f'<span class="n">{esc(text)}</span>')
    return td_html(inner, "" if value is None else repr(float(value)), "num barcell")


def kv_table(pairs: Iterable[tuple[str, str]]) -> str:
    """A two-column key/value table; values are already HTML."""
    rows = "".join(f'<tr><th scope="row">{esc(k)}</th><td>{v}</td></tr>' for k, v in pairs)
    return f'<div class="table-wrap"><table class="kv"><tbody>{rows}</tbody></table></div>'


# --------------------------------------------------------------------------- images

def sniff_mime(data: bytes) -> str | None:
    for magic, mime in _MAGIC:
        if data.startswith(magic):
            return mime
    return None


def data_uri(data: bytes, mime: str = "image/png") -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def img(data: bytes, alt: str, cls: str = "", width: int | None = None) -> str:
    """An ``<img>`` embedding ``data`` (PNG/JPEG/GIF bytes) as a data URI."""
    mime = sniff_mime(data) or "image/png"
    size = f' width="{int(width)}"' if width else ""
    klass = f' class="{cls}"' if cls else ""
    return f'<img src="{data_uri(data, mime)}" alt="{esc(alt)}"{klass}{size}>'


def _encode(image: Any) -> bytes:
    """PNG for small or flat images, JPEG (quality 85) for large photos."""
    buf = io.BytesIO()
    if image.width * image.height <= 160 * 160 or image.mode not in ("RGB", "L"):
        image.save(buf, format="PNG", optimize=True)
    else:
        image.save(buf, format="JPEG", quality=85)
    return buf.getvalue()


def image_bytes(path: Path, max_side: int = MAX_FIGURE_SIDE_PX) -> bytes | None:
    """Embeddable bytes of an image file, fully decoded first; None when it is not a usable image.

    Small PNG/JPEG files are embedded unchanged; others are downscaled to ``max_side``.
    """
    from imgclf.data.decode import decode_image

    try:
        decoded = decode_image(path, mode="rgb")
        raw = path.read_bytes()
    except (ImgclfError, OSError):
        return None
    image = decoded.image
    if sniff_mime(raw) in ("image/png", "image/jpeg") and len(raw) <= MAX_RAW_IMAGE_BYTES \
            and max(image.size) <= max_side:
        return raw
    image = image.copy()
    image.thumbnail((max_side, max_side))
    return _encode(image)


def thumbnail_bytes(path: Path, side: int = THUMB_SIDE_PX) -> bytes | None:
    """A small re-encoded copy of an image for a gallery card; None when unreadable."""
    from PIL import Image

    from imgclf.data.decode import decode_image

    try:
        image = decode_image(path, mode="rgb").image.copy()
    except (ImgclfError, OSError):
        return None
    if max(image.size) < side // 2:   # blow tiny images up with crisp pixels
        scale = max(1, (side // 2) // max(image.size))
        image = image.resize((image.width * scale, image.height * scale), Image.Resampling.NEAREST)
    image.thumbnail((side, side))
    return _encode(image)


def figure(data: bytes | None, alt: str, caption_html: str = "", cls: str = "") -> str:
    """A ``<figure>`` with an embedded image, or a note when the image is unreadable."""
    if data is None:
        return note(f"Image could not be read: {esc(alt)}", "problem")
    cap = f"<figcaption>{caption_html}</figcaption>" if caption_html else ""
    klass = f' class="{cls}"' if cls else ""
    return f"<figure{klass}>{img(data, alt)}{cap}</figure>"
