"""Procedural images for the built-in benchmark: glyphs from the fonts matplotlib ships, traffic-sign-like
pictograms on photo backgrounds, and crops of the photos scikit-image and scikit-learn ship.

Everything draws at a canvas of `canvas_side(R)` pixels and is downsampled to R afterwards, so edges are
antialiased at any resolution. All randomness comes from the numpy Generator passed in.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

GLYPH_CLASSES = list("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ") + list("abdefghnqrt")
# Text fonts of the matplotlib wheel that map every glyph class to a real glyph (checked: no blanks, no
# duplicates); the math-symbol and size-variant fonts are left out.
FONT_FILES = (
    "DejaVuSans.ttf", "DejaVuSans-Bold.ttf", "DejaVuSans-Oblique.ttf", "DejaVuSans-BoldOblique.ttf",
    "DejaVuSansMono.ttf", "DejaVuSansMono-Bold.ttf", "DejaVuSansMono-Oblique.ttf", "DejaVuSansMono-BoldOblique.ttf",
    "DejaVuSerif.ttf", "DejaVuSerif-Bold.ttf", "DejaVuSerif-Italic.ttf", "DejaVuSerif-BoldItalic.ttf",
    "STIXGeneral.ttf", "STIXGeneralBol.ttf", "STIXGeneralItalic.ttf", "STIXGeneralBolIta.ttf",
    "cmr10.ttf", "cmb10.ttf", "cmti10.ttf", "cmss10.ttf", "cmtt10.ttf",
)


def canvas_side(resolution: int) -> int:
    return max(2 * resolution, 64)


def font_dir() -> Path:
    import matplotlib

    return Path(matplotlib.get_data_path()) / "fonts" / "ttf"


def _noise(img: np.ndarray, rng: np.random.Generator, max_sigma: float) -> np.ndarray:
    sigma = rng.uniform(0, max_sigma)
    return np.clip(img.astype(np.float32) + rng.normal(0, sigma, img.shape), 0, 255).astype(np.uint8)


def _luma(rgb: np.ndarray) -> float:
    return float(rgb @ np.array([0.299, 0.587, 0.114]))


# ---------------------------------------------------------------------------------------------------------
# Glyphs


def render_glyphs(labels: np.ndarray, side: int, rng: np.random.Generator) -> np.ndarray:
    """One glyph per label (an index into GLYPH_CLASSES): random font, size, rotation, offset, colours, noise."""
    fonts: dict[tuple[str, int], ImageFont.FreeTypeFont] = {}
    folder = font_dir()
    out = np.empty((len(labels), side, side, 3), dtype=np.uint8)
    for k, label in enumerate(labels):
        name = FONT_FILES[rng.integers(len(FONT_FILES))]
        size = int(side * rng.uniform(0.55, 0.85))
        if (name, size) not in fonts:
            fonts[name, size] = ImageFont.truetype(str(folder / name), size)
        mask = Image.new("L", (side, side), 0)
        centre = (side / 2 + rng.uniform(-0.1, 0.1) * side, side / 2 + rng.uniform(-0.08, 0.08) * side)
        ImageDraw.Draw(mask).text(centre, GLYPH_CLASSES[label], font=fonts[name, size], fill=255, anchor="mm",
                                  stroke_width=int(rng.integers(0, max(1, side // 40) + 1)), stroke_fill=255)
        mask = mask.rotate(rng.uniform(-15, 15), resample=Image.Resampling.BILINEAR)
        bg, fg = _contrasting_pair(rng)
        if _luma(fg) > _luma(bg):  # dark ink on a light ground, as written characters are
            bg, fg = fg, bg
        m = np.asarray(mask, dtype=np.float32)[..., None] / 255.0
        ramp = np.linspace(rng.uniform(0.8, 1.0), rng.uniform(1.0, 1.2), side, dtype=np.float32)[:, None, None]
        img = (bg * ramp) * (1 - m) + fg * m
        out[k] = _noise(np.clip(img, 0, 255), rng, 12.0)
    return out


def _contrasting_pair(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A background and a stroke colour far enough apart in brightness to stay legible when downsampled."""
    while True:
        bg, fg = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
        if abs(_luma(bg) - _luma(fg)) > 100:
            return bg.astype(np.float32), fg.astype(np.float32)


# ---------------------------------------------------------------------------------------------------------
# Traffic-sign-like pictograms

RED, WHITE, BLUE, YELLOW, BLACK = (200, 25, 30), (240, 240, 235), (25, 75, 170), (245, 190, 20), (25, 25, 25)


@dataclass(frozen=True)
class SignClass:
    name: str
    shape: str  # circle | triangle | inverted_triangle | square | diamond | octagon
    fill: tuple[int, int, int]
    border: tuple[int, int, int]
    symbol: str  # none | bar | exclaim | arrow_left | arrow_right | arrow_up | plus | x | slash | P
    ink: tuple[int, int, int]


SIGN_CLASSES = (
    SignClass("stop", "octagon", RED, WHITE, "bar", WHITE),
    SignClass("yield", "inverted_triangle", WHITE, RED, "none", BLACK),
    SignClass("danger", "triangle", WHITE, RED, "exclaim", BLACK),
    SignClass("bend left", "triangle", WHITE, RED, "arrow_left", BLACK),
    SignClass("bend right", "triangle", WHITE, RED, "arrow_right", BLACK),
    SignClass("crossroads", "triangle", WHITE, RED, "plus", BLACK),
    SignClass("no entry", "circle", RED, WHITE, "bar", WHITE),
    SignClass("road closed", "circle", WHITE, RED, "none", BLACK),
    SignClass("no left turn", "circle", WHITE, RED, "arrow_left", BLACK),
    SignClass("no stopping", "circle", BLUE, RED, "x", RED),
    SignClass("turn left", "circle", BLUE, WHITE, "arrow_left", WHITE),
    SignClass("turn right", "circle", BLUE, WHITE, "arrow_right", WHITE),
    SignClass("ahead only", "circle", BLUE, WHITE, "arrow_up", WHITE),
    SignClass("priority road", "diamond", YELLOW, WHITE, "none", BLACK),
    SignClass("end of priority", "diamond", WHITE, BLACK, "slash", BLACK),
    SignClass("one way", "square", BLUE, WHITE, "arrow_up", WHITE),
    SignClass("parking", "square", BLUE, WHITE, "P", WHITE),
)

# Inradius over circumradius of each shape: how much room a symbol has inside it.
_INNER = {"circle": 1.0, "octagon": math.cos(math.pi / 8), "square": math.sqrt(0.5), "diamond": math.sqrt(0.5),
          "triangle": 0.5, "inverted_triangle": 0.5}
# Symbol half-size over the inradius, and its vertical shift over the circumradius: a triangle has more room
# towards its base than its inscribed circle suggests, so its symbol is larger and moved towards the base.
_SYMBOL_FIT = {"triangle": (1.0, 0.1), "inverted_triangle": (1.0, -0.1)}


def _shape(shape: str, cx: float, cy: float, r: float) -> list[tuple[float, float]] | None:
    """Polygon vertices of a shape of circumradius r (None for a circle, drawn as an ellipse)."""
    vertex_angles: dict[str, list[float]] = {
        "octagon": [22.5 + 45 * i for i in range(8)],
        "square": [45 + 90 * i for i in range(4)],
        "diamond": [90 * i for i in range(4)],
        "triangle": [-90, 30, 150],
        "inverted_triangle": [90, 210, 330],
    }
    angles = vertex_angles.get(shape)
    if angles is None:
        return None
    return [(cx + r * math.cos(math.radians(a)), cy + r * math.sin(math.radians(a))) for a in angles]


def _draw_shape(draw: ImageDraw.ImageDraw, shape: str, cx: float, cy: float, r: float, colour: tuple[int, ...]) -> None:
    poly = _shape(shape, cx, cy, r)
    if poly is None:
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=colour)
    else:
        draw.polygon(poly, fill=colour)


def _draw_symbol(draw: ImageDraw.ImageDraw, symbol: str, cx: float, cy: float, s: float,
                 colour: tuple[int, ...], font: ImageFont.FreeTypeFont) -> None:
    """Draw `symbol` centred at (cx, cy), fitting a box of half-side s."""

    def poly(points: list[tuple[float, float]], angle: float = 0.0) -> None:
        c, n = math.cos(math.radians(angle)), math.sin(math.radians(angle))
        draw.polygon([(cx + s * (x * c - y * n), cy + s * (x * n + y * c)) for x, y in points], fill=colour)

    bar = [(-0.8, -0.2), (0.8, -0.2), (0.8, 0.2), (-0.8, 0.2)]
    arrow = [(-0.85, 0), (-0.2, -0.6), (-0.2, -0.22), (0.8, -0.22), (0.8, 0.22), (-0.2, 0.22), (-0.2, 0.6)]
    if symbol == "bar":
        poly(bar)
    elif symbol == "plus":
        poly(bar)
        poly(bar, 90)
    elif symbol == "x":
        poly(bar, 45)
        poly(bar, -45)
    elif symbol == "slash":
        poly([(-1.0, -0.18), (1.0, -0.18), (1.0, 0.18), (-1.0, 0.18)], -45)
    elif symbol == "exclaim":
        poly([(-0.13, -0.85), (0.13, -0.85), (0.08, 0.3), (-0.08, 0.3)])
        draw.ellipse((cx - 0.15 * s, cy + 0.5 * s, cx + 0.15 * s, cy + 0.8 * s), fill=colour)
    elif symbol in ("arrow_left", "arrow_right", "arrow_up"):
        poly(arrow, {"arrow_left": 0, "arrow_right": 180, "arrow_up": 90}[symbol])
    elif symbol == "P":
        draw.text((cx, cy), "P", font=font, fill=colour, anchor="mm")
    elif symbol != "none":
        raise ValueError(f"unknown sign symbol {symbol!r}")


def render_signs(labels: np.ndarray, side: int, photos: list[np.ndarray], rng: np.random.Generator) -> np.ndarray:
    """One sign per label (an index into SIGN_CLASSES) over a random photo crop, with viewpoint jitter,
    lighting changes, blur and noise."""
    big = 2 * side  # shapes are drawn at twice the canvas and shrunk: PIL polygons have no antialiasing
    font = ImageFont.truetype(str(font_dir() / "DejaVuSans-Bold.ttf"), int(big * 0.35))
    out = np.empty((len(labels), side, side, 3), dtype=np.uint8)
    for k, label in enumerate(labels):
        cls = SIGN_CLASSES[label]
        layer = Image.new("RGBA", (big, big), (0, 0, 0, 0))
        draw = ImageDraw.Draw(layer)
        r = big * 0.46
        c = big / 2
        inner = _INNER[cls.shape]
        border = 0.13 * r
        _draw_shape(draw, cls.shape, c, c, r, (*cls.border, 255))
        r_in = r - border / inner
        _draw_shape(draw, cls.shape, c, c, r_in, (*cls.fill, 255))
        fit, shift = _SYMBOL_FIT.get(cls.shape, (0.72, 0.0))
        _draw_symbol(draw, cls.symbol, c, c + shift * r_in, fit * inner * r_in, (*cls.ink, 255), font)
        layer = layer.resize((side, side), Image.Resampling.LANCZOS)
        out[k] = _compose(layer, _background(photos, side, rng), rng)
    return out


def _compose(sign: Image.Image, background: Image.Image, rng: np.random.Generator) -> np.ndarray:
    """Place the sign with a random scale, offset, rotation and horizontal squash (an oblique view)."""
    side = sign.size[0]
    scale = rng.uniform(0.55, 0.95)
    squash = rng.uniform(0.75, 1.0)
    angle = math.radians(rng.uniform(-10, 10))
    shift = rng.uniform(-0.12, 0.12, 2) * side
    # Inverse affine map (output pixel -> sign pixel), as PIL's transform expects.
    a, b = math.cos(angle) / (scale * squash), math.sin(angle) / (scale * squash)
    d, e = -math.sin(angle) / scale, math.cos(angle) / scale
    cx, cy = side / 2 + shift[0], side / 2 + shift[1]
    coeffs = (a, b, side / 2 - a * cx - b * cy, d, e, side / 2 - d * cx - e * cy)
    placed = sign.transform((side, side), Image.Transform.AFFINE, coeffs, resample=Image.Resampling.BILINEAR)
    background.paste(placed, (0, 0), placed)
    img = background.filter(ImageFilter.GaussianBlur(rng.uniform(0, side / 48)))
    light = rng.uniform(0.55, 1.2) * rng.uniform(0.9, 1.1, 3)
    return _noise(np.clip(np.asarray(img, dtype=np.float32) * light, 0, 255), rng, 10.0)


def _background(photos: list[np.ndarray], side: int, rng: np.random.Generator) -> Image.Image:
    photo = photos[rng.integers(len(photos))]
    h, w = photo.shape[:2]
    crop = int(rng.uniform(0.2, 0.6) * min(h, w))
    y, x = rng.integers(0, h - crop + 1), rng.integers(0, w - crop + 1)
    return Image.fromarray(photo[y : y + crop, x : x + crop]).resize((side, side), Image.Resampling.BILINEAR)


# ---------------------------------------------------------------------------------------------------------
# Photo crops


def photo_regions(photo: np.ndarray) -> dict[str, np.ndarray]:
    """Cut a photo into disjoint regions: 70% of the longer axis for train, the rest halved into val and test,
    so held-out crops never overlap a training crop."""
    h, w = photo.shape[:2]
    if w >= h:
        cut = int(0.7 * w)
        held = photo[:, cut:]
        half = h // 2
        return {"train": photo[:, :cut], "val": held[:half], "test": held[half:]}
    cut = int(0.7 * h)
    held = photo[cut:]
    half = w // 2
    return {"train": photo[:cut], "val": held[:, :half], "test": held[:, half:]}


def render_crops(region: np.ndarray, count: int, photo_side: int, side: int, rng: np.random.Generator) -> np.ndarray:
    """Random crops of one region: side 12-30% of the whole photo's shorter side, rotated, flipped, relit."""
    h, w = region.shape[:2]
    image = Image.fromarray(region)
    out = np.empty((count, side, side, 3), dtype=np.uint8)
    for k in range(count):
        angle = rng.uniform(-30, 30)
        # A box this much larger than the crop holds the crop at any rotation up to 45 degrees.
        margin = abs(math.cos(math.radians(angle))) + abs(math.sin(math.radians(angle)))
        crop = rng.uniform(0.12, 0.3) * photo_side
        crop = max(4.0, min(crop, min(h, w) / margin))
        box = min(int(math.ceil(crop * margin)), h, w)
        y, x = rng.integers(0, h - box + 1), rng.integers(0, w - box + 1)
        patch = image.crop((x, y, x + box, y + box)).rotate(angle, resample=Image.Resampling.BILINEAR)
        off, size = (box - round(crop)) // 2, round(crop)
        patch = patch.crop((off, off, off + size, off + size)).resize((side, side), Image.Resampling.BILINEAR)
        arr = np.asarray(patch, dtype=np.float32)
        if rng.random() < 0.5:
            arr = arr[:, ::-1]
        out[k] = np.clip(arr * rng.uniform(0.8, 1.2), 0, 255).astype(np.uint8)
    return out
