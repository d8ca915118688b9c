"""Benchmark data sets of different character, built from packaged real pixels (no download).

| name | what | classes | train / val | native size |
|---|---|---|---|---|
| digits | scikit-learn's handwritten digit scans, split by ``imgclf prepare`` | 10 | 1,438 / 359 | 8 px (grey) |
| letters | letters A-J (upper and lower case) rendered from installed fonts; val fonts are families never seen in training | 10 | ~7,400 / ~1,900 | 32 px (grey) |
| photos | patches of scikit-image's colour photographs, one class per photograph; val patches come from a band of each photograph that no train patch touches | 10 | 6,400 / 1,600 | 64 px (colour JPEG) |
| tiny | the photos task with two photographs and 100 patches each: the few-steps-per-epoch case | 2 | 160 / 40 | 64 px (colour JPEG) |

letters, photos and tiny are split by group (font family, region of the photograph), not at
random, so the val accuracy measures generalisation rather than recognising near-copies; they
are written straight into WORK/data/<name>/{train,val}/<class>/. digits goes through the real
``imgclf prepare`` (val 0.2, seed 0). Built once, then reused.
``letters`` needs font files: ``scripts/install-bench-fonts.sh`` installs Debian's font packages
(the ``make bench`` target runs it); the builder refuses with fewer than MIN_FONTS usable fonts.

    python benchmarks/datasets.py                  # build all, print a summary table
    python benchmarks/datasets.py --only letters
"""

from __future__ import annotations

import argparse
import re
import shutil
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageEnhance, ImageFilter, ImageFont

from common import WORK, count_images, digits_data

FONT_DIRS = (Path("/usr/share/fonts"), Path("/usr/local/share/fonts"))
MIN_FONTS = 40
NOT_LETTERS = ("symbol", "dingbat", "math", "d050000l")   # fonts that map A-J to other symbols
LETTERS = "ABCDEFGHIJ"
# colour photographs in skimage.data (the ones that ship with the package, no download)
PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "hubble_deep_field", "immunohistochemistry", "retina",
          "colorwheel", "logo", "stereo_motorcycle")
TINY_PHOTOS = ("chelsea", "coffee")


def _rng(*key: object) -> np.random.Generator:
    return np.random.default_rng(zlib.crc32("|".join(map(str, key)).encode()))


# --- letters --------------------------------------------------------------------------------

def _glyph_mask(font: ImageFont.FreeTypeFont, char: str) -> bytes:
    return bytes(font.getmask(char))


def usable_fonts() -> list[Path]:
    """Font files with real, distinct Latin glyphs for A-J and a-j (symbol and math fonts drop out)."""
    files = sorted({p for d in FONT_DIRS if d.is_dir() for p in d.rglob("*") if p.suffix.lower() in (".ttf", ".otf")})
    fonts = []
    for path in files:
        if any(word in path.stem.lower() for word in NOT_LETTERS):
            continue
        try:
            font = ImageFont.truetype(str(path), 24)
            masks = {_glyph_mask(font, c) for c in LETTERS + LETTERS.lower()}
        except (OSError, ValueError):
            continue
        if len(masks) == 2 * len(LETTERS):   # a missing glyph renders as the same .notdef box
            fonts.append(path)
    return fonts


def font_family(path: Path) -> str:
    """'LiberationSans-BoldItalic' -> 'LiberationSans'; 'FreeSerifBold' -> 'FreeSerif'; 'EBGaramond12' -> 'EBGaramond'."""
    name = re.split(r"[-_]", path.stem)[0]
    name = re.sub(r"(Bold|Italic|Oblique|Regular|Light|Medium|Condensed)+$", "", name)
    return re.sub(r"\d+$", "", name) or path.stem


def split_fonts(fonts: list[Path], val_every: int = 5) -> dict[str, list[Path]]:
    """Whole font families to train or val: every ``val_every``-th family (sorted by name) is val."""
    families = sorted({font_family(f) for f in fonts})
    val = set(families[::val_every])
    return {"train": [f for f in fonts if font_family(f) not in val], "val": [f for f in fonts if font_family(f) in val]}


def render_letter(font_path: Path, char: str, size: int, rng: np.random.Generator) -> Image.Image:
    """One glyph, dark on light, at a random size, offset, rotation and weight, with noise, (size, size)."""
    canvas = 2 * size
    font = ImageFont.truetype(str(font_path), int(size * rng.uniform(0.5, 0.9)))
    bg, fg = int(rng.integers(170, 256)), int(rng.integers(0, 110))
    img = Image.new("L", (canvas, canvas), bg)
    draw = ImageDraw.Draw(img)
    left, top, right, bottom = draw.textbbox((0, 0), char, font=font)
    x = (canvas - (right - left)) / 2 - left + rng.uniform(-0.15, 0.15) * size
    y = (canvas - (bottom - top)) / 2 - top + rng.uniform(-0.15, 0.15) * size
    draw.text((x, y), char, fill=fg, font=font)
    if rng.random() < 1 / 3:   # a bolder stroke (thinning would erase the hairline fonts)
        img = img.filter(ImageFilter.MinFilter(3))
    img = img.rotate(float(rng.uniform(-15, 15)), resample=Image.Resampling.BILINEAR, fillcolor=bg)
    c = canvas // 4
    noise = rng.normal(0, rng.uniform(0, 12), (size, size))
    pixels = np.asarray(img.crop((c, c, c + size, c + size)), dtype=np.float32) + noise
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def build_letters(data: Path, size: int = 32, renders: int = 3) -> None:
    fonts = usable_fonts()
    if len(fonts) < MIN_FONTS:
        raise SystemExit(f"letters: only {len(fonts)} usable font files under {', '.join(map(str, FONT_DIRS))}; "
                         f"need {MIN_FONTS}: run scripts/install-bench-fonts.sh")
    for split, split_fonts_ in split_fonts(fonts).items():
        for letter in LETTERS:
            folder = data / split / letter
            folder.mkdir(parents=True, exist_ok=True)
            for font in split_fonts_:
                for char in (letter, letter.lower()):
                    for k in range(renders):
                        img = render_letter(font, char, size, _rng("letters", font.name, char, k))
                        img.save(folder / f"{font.stem}-{ord(char)}-{k}.png")


# --- photos ---------------------------------------------------------------------------------

def load_photo(name: str) -> np.ndarray:
    """(H, W, 3) uint8 of a packaged colour photograph (RGBA composited on white)."""
    import skimage.data

    img = skimage.data.stereo_motorcycle()[0] if name == "stereo_motorcycle" else getattr(skimage.data, name)()
    if img.shape[2] == 4:
        alpha = img[:, :, 3:4].astype(np.float32) / 255.0
        img = (img[:, :, :3] * alpha + 255.0 * (1 - alpha)).astype(np.uint8)
    return np.ascontiguousarray(img[:, :, :3])


# columns of a photograph that each split cuts its patches from (as fractions of the width)
REGIONS = {"train": (0.0, 0.65), "val": (0.70, 1.0)}


def cut_patch(photo: np.ndarray, region: tuple[float, float], size: int, rng: np.random.Generator,
              min_std: float = 10.0) -> Image.Image:
    """A random square patch (8-25% of the shorter side) inside the region, with flips and colour jitter.

    Nearly flat patches (std < min_std, e.g. black sky) are drawn again, up to 50 times.
    """
    h, w = photo.shape[:2]
    x0, x1 = int(region[0] * w), int(region[1] * w)
    for _ in range(50):
        side = min(int(min(h, w) * rng.uniform(0.08, 0.25)), x1 - x0)
        top, left = int(rng.integers(0, h - side + 1)), int(rng.integers(x0, x1 - side + 1))
        crop = photo[top:top + side, left:left + side]
        if crop.std() >= min_std:
            break
    img = Image.fromarray(crop).resize((size, size), Image.Resampling.BILINEAR)
    if rng.random() < 0.5:
        img = img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    for enhancer in (ImageEnhance.Brightness, ImageEnhance.Contrast, ImageEnhance.Color):
        img = enhancer(img).enhance(float(rng.uniform(0.75, 1.25)))
    return img


def build_photos(data: Path, names: tuple[str, ...] = PHOTOS, per_class: int = 800, size: int = 64,
                 val_share: float = 0.2) -> None:
    for name in names:
        photo = load_photo(name)
        num_val = round(per_class * val_share)
        for split, count in (("train", per_class - num_val), ("val", num_val)):
            folder = data / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(count):
                patch = cut_patch(photo, REGIONS[split], size, _rng("photos", name, split, i))
                patch.save(folder / f"{name}-{split}-{i:04d}.jpg", quality=90)


# --- the registry ---------------------------------------------------------------------------

BUILDERS: dict[str, Callable[[Path], None]] = {
    "letters": build_letters,
    "photos": build_photos,
    "tiny": lambda data: build_photos(data, TINY_PHOTOS, per_class=100),
}
NAMES = ("digits", *BUILDERS)
DONE = ".built"   # marker written last: a half-built folder is rebuilt


def dataset(name: str) -> Path:
    """DATA folder of a benchmark data set, built on first use."""
    if name == "digits":
        return digits_data()
    data = WORK / "data" / name
    if (data / DONE).is_file():
        return data
    shutil.rmtree(data, ignore_errors=True)
    BUILDERS[name](data)
    (data / DONE).write_text("ok\n", encoding="utf-8")
    return data


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=NAMES, action="append", help="build only these (repeatable)")
    args = parser.parse_args(argv)
    print("| data set | classes | train | val |\n|---|---|---|---|")
    for name in args.only or NAMES:
        data = dataset(name)
        classes = sorted(p.name for p in (data / "train").iterdir() if p.is_dir())
        print(f"| {name} | {len(classes)} | {count_images(data / 'train')} | {count_images(data / 'val')} |")


if __name__ == "__main__":
    main()
