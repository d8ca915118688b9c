"""decode_image on every kind of bad or odd file: a reason for the bad, the right pixels for the odd."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import bad_files, odd_images, write_files

from imgclf.data.decode import decode_image, to_uint8_array
from imgclf.errors import ImageDecodeError

REASONS = {
    "empty.jpg": "empty file",
    "truncated.jpg": "truncated",
    "truncated.png": "truncated",
    "text.jpg": "not a recognised image",
    "bomb.png": "",  # "decompression bomb" or "too large", depending on the size
}


@pytest.fixture
def odd(tmp_path: Path) -> Path:
    write_files(tmp_path, odd_images())
    return tmp_path


@pytest.mark.parametrize("name", sorted(REASONS))
def test_bad_files_raise_with_file_and_reason(tmp_path: Path, name: str) -> None:
    (path,) = write_files(tmp_path, {name: bad_files()[name]})
    with pytest.raises(ImageDecodeError) as info:
        decode_image(path)
    assert info.value.path == str(path)
    assert REASONS[name] in info.value.reason
    if name == "bomb.png":
        assert "bomb" in info.value.reason or "too large" in info.value.reason


def test_max_pixels_limit_names_the_flag(tmp_path: Path, odd: Path) -> None:
    with pytest.raises(ImageDecodeError, match="--max-pixels"):
        decode_image(odd / "cmyk.jpg", max_pixels=10)


def test_cmyk_becomes_rgb(odd: Path) -> None:
    decoded = decode_image(odd / "cmyk.jpg")
    r, g, b = decoded.image.getpixel((4, 4))
    assert decoded.image.mode == "RGB" and r > 200 and g < 60 and b < 60
    assert any("CMYK" in n for n in decoded.notes)


def test_16bit_grey_keeps_its_range(odd: Path) -> None:
    kept = decode_image(odd / "grey16.png", "keep").image
    assert kept.mode == "I;16"
    assert int(np.asarray(kept).max()) == 63 * 1040
    grey = np.asarray(decode_image(odd / "grey16.png", "gray").image)
    assert grey.dtype == np.uint8 and grey.max() == round(63 * 1040 * 255 / 65535) and grey.min() == 0
    assert len(np.unique(grey)) > 32  # scaled, not clipped to a few values


def test_palette_with_transparency_is_composited_on_white(odd: Path) -> None:
    arr = np.asarray(decode_image(odd / "palette_alpha.png").image)
    assert arr.shape == (8, 8, 3)
    assert tuple(arr[0, 0]) == (255, 255, 255) and tuple(arr[0, 7]) == (255, 0, 0)


def test_la_and_rgba_are_composited(odd: Path) -> None:
    la = decode_image(odd / "la.png").image
    assert la.mode == "L" and la.getpixel((0, 0)) == 255 and la.getpixel((7, 0)) == 0
    rgba = decode_image(odd / "rgba.png").image
    assert rgba.mode == "RGB" and rgba.getpixel((0, 0)) == (255, 255, 255)


def test_one_bit_becomes_full_range_grey(odd: Path) -> None:
    img = decode_image(odd / "bit1.png").image
    assert img.mode == "L" and img.getpixel((0, 0)) == 255


def test_exif_orientation_is_applied(odd: Path) -> None:
    decoded = decode_image(odd / "exif_rotated.jpg")
    assert decoded.size == (10, 20)
    top = to_uint8_array(decoded.image, 3)[0, 5]
    assert top[2] > 150 and top[0] < 100  # the blue left half is now on top
    assert any("EXIF" in n for n in decoded.notes)


def test_every_conversion_leaves_a_note(odd: Path) -> None:
    for name in ("cmyk.jpg", "palette_alpha.png", "la.png", "rgba.png", "bit1.png", "exif_rotated.jpg"):
        assert decode_image(odd / name).notes, name
    assert decode_image(odd / "grey16.png", "keep").notes == []
