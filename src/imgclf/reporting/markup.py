"""Small HTML building blocks: escaping by construction, numbers, sortable tables, embedded images.

Every builder returns :class:`markupsafe.Markup` and puts values in with ``Markup.format`` or
``Markup.join``, which escape anything that is not already ``Markup``: a string read from a
file (a class name, a path) can only reach the page as text. Every image becomes a ``data:``
URI, so the page is one file that needs no server and no network.
"""

from __future__ import annotations

import base64
import io
import shlex
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from markupsafe import Markup, escape

from imgclf.errors import ImgclfError

MAX_RAW_IMAGE_BYTES = 1_500_000     # larger figures are downscaled before embedding
MAX_FIGURE_SIDE_PX = 1800
THUMB_SIDE_PX = 176
EMPTY = Markup("")

_MAGIC = ((b"\x89PNG\r\n\x1a\n", "image/png"), (b"\xff\xd8\xff", "image/jpeg"), (b"GIF8", "image/gif"))


def esc(value: Any) -> Markup:
    """``value`` as text: HTML-escaped (quotes included) unless it is already Markup."""
    return escape(value if isinstance(value, (str, Markup)) else str(value))


def join(parts: Iterable[Any]) -> Markup:
    """Concatenate fragments; plain strings among them are escaped."""
    return EMPTY.join(parts)


def attr(name: str, value: Any) -> Markup:
    """`` name="value"`` (value escaped), or nothing when ``value`` is None."""
    return EMPTY if value is None else Markup(' {}="{}"').format(Markup(name), value)


def code(text: str) -> Markup:
    return Markup("<code>{}</code>").format(text)


def command_for(verb: str, run_arg: str, extra: str = "") -> str:
    """The shell command that fills a section, e.g. ``imgclf mistakes runs/x-1``."""
    return f"imgclf {verb} {shlex.quote(run_arg)}{extra}"


def hint(what: str, verb: str, run_arg: str) -> Markup:
    """The 'not run yet' paragraph naming the command that fills a section."""
    return Markup('<p class="hint"><strong>Not run yet:</strong> {}. Run {} to fill this section.</p>').format(
        what, code(command_for(verb, run_arg)))


def note(text: Any, cls: str = "note") -> Markup:
    """A paragraph; ``text`` is Markup already, or plain text (escaped)."""
    return Markup("<p{}>{}</p>").format(attr("class", cls or None), text)


def problem(text: str) -> Markup:
    return Markup('<p class="problem"><strong>Problem:</strong> {}</p>').format(text)


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

def td(content: Any, cls: str = "", sort: float | str | None = None) -> Markup:
    """A cell: plain text is escaped, Markup is kept; ``sort`` is the value the column sorts by."""
    return Markup("<td{}{}>{}</td>").format(attr("class", cls or None), attr("data-sort", sort), content)


def num_td(value: float | None, text: str | None = None, cls: str = "") -> Markup:
    """A right-aligned number cell that sorts by value (blanks sort first)."""
    shown = text if text is not None else fmt_num(value)
    sort = "" if value is None else repr(float(value))
    return Markup('<td class="{}" data-sort="{}">{}</td>').format(f"num {cls}".strip(), sort, shown)


def table(headers: Sequence[str], rows: Iterable[Sequence[Markup]], foot: Sequence[Markup] | None = None,
          caption: str = "", numeric: Sequence[bool] | None = None, cls: str = "sortable") -> Markup:
    """A table of ``<td>`` cells; click a header to sort (see the page script)."""
    numeric = numeric or [False] * len(headers)
    head = join(Markup('<th scope="col"{} tabindex="0">{}</th>').format(Markup(" class=num") if n else EMPTY, h)
                for h, n in zip(headers, numeric))
    body = join(Markup("<tr>{}</tr>").format(join(cells)) for cells in rows)
    parts = [Markup('<div class="table-wrap"><table class="{}">').format(cls)]
    if caption:
        parts.append(Markup("<caption>{}</caption>").format(caption))
    parts.append(Markup("<thead><tr>{}</tr></thead><tbody>{}</tbody>").format(head, body))
    if foot:
        parts.append(Markup("<tfoot><tr>{}</tr></tfoot>").format(join(foot)))
    parts.append(Markup("</table></div>"))
    return join(parts)


def bar_td(value: float | None, fraction: float, text: str) -> Markup:
    """A number cell with a small horizontal bar (``fraction`` of the track) left of the number."""
    width = f"{100.0 * min(1.0, max(0.0, fraction)):.1f}"
    inner = Markup('<span class="track"><span class="bar" style="width:{}%"></span></span>'
                   '<span class="n">{}</span>').format(width, text)
    return td(inner, "num barcell", "" if value is None else repr(float(value)))


def kv_table(pairs: Iterable[tuple[str, Any]]) -> Markup:
    """A two-column key/value table; values are Markup or plain text (escaped)."""
    rows = join(Markup('<tr><th scope="row">{}</th><td>{}</td></tr>').format(k, v) for k, v in pairs)
    return Markup('<div class="table-wrap"><table class="kv"><tbody>{}</tbody></table></div>').format(rows)


# --------------------------------------------------------------------------- images

def sniff_mime(data: bytes) -> str | None:
    for magic, mime in _MAGIC:
        if data.startswith(magic):
            return mime
    return None


def data_uri(data: bytes, mime: str = "image/png") -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def img(data: bytes, alt: str, cls: str = "", width: int | None = None) -> Markup:
    """An ``<img>`` embedding ``data`` (PNG/JPEG/GIF bytes) as a data URI."""
    mime = sniff_mime(data) or "image/png"
    return Markup('<img src="{}" alt="{}"{}{}>').format(data_uri(data, mime), alt, attr("class", cls or None),
                                                        attr("width", int(width) if width else None))
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


def figure(data: bytes | None, alt: str, caption: Any = "", cls: str = "") -> Markup:
    """A ``<figure>`` with an embedded image, or a note when the image is unreadable."""
    if data is None:
        return note(Markup("Image could not be read: {}").format(alt), "problem")
    cap = Markup("<figcaption>{}</figcaption>").format(caption) if caption else EMPTY
    return Markup("<figure{}>{}{}</figure>").format(attr("class", cls or None), img(data, alt), cap)
