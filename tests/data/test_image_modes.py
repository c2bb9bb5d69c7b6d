"""Every mode Pillow opens a file in becomes 8-bit RGB over its whole range, or is refused with the file named.

Each picture is 16 x 16 and decoded at 16 px, so no resize blurs the values compared."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mpnas.data import load_domains
from mpnas.data.images import UnsupportedImage, decode_square
from mpnas.errors import MpnasError

R = 16
RAMP16 = np.tile(np.linspace(0, 65535, R).round().astype(np.uint16), (R, 1))  # 0 .. 65535 left to right


def _save(tmp_path: Path, name: str, im: Image.Image, mode: str) -> Path:
    path = tmp_path / name
    im.save(path)
    assert Image.open(path).mode == mode  # the file really opens in the mode under test
    return path


def _ramp_is_full_range(rgb: np.ndarray) -> None:
    row = rgb[0, 0]
    assert rgb.dtype == np.uint8 and (rgb[0] == rgb[1]).all() and (rgb[1] == rgb[2]).all()  # grey
    assert row[0] == 0 and row[-1] == 255 and (np.diff(row.astype(int)) > 0).all()
    assert np.abs(row.astype(int) - np.linspace(0, 255, R)).max() <= 1


def test_16_bit_grey_png_spans_0_to_255(tmp_path):
    # Pillow's convert("RGB") turns 15 of these 16 columns white.
    _ramp_is_full_range(decode_square(_save(tmp_path, "g.png", Image.fromarray(RAMP16), "I;16"), R))


def test_16_bit_big_endian_tiff_spans_0_to_255(tmp_path):
    im = Image.frombytes("I;16B", (R, R), RAMP16.astype(">u2").tobytes())
    _ramp_is_full_range(decode_square(_save(tmp_path, "g.tif", im, "I;16B"), R))


def test_32_bit_integer_grey_is_read_on_the_16_bit_range(tmp_path):
    path = _save(tmp_path, "i.tif", Image.fromarray(RAMP16.astype(np.int32)), "I")
    _ramp_is_full_range(decode_square(path, R))
    too_big = _save(tmp_path, "big.tif", Image.fromarray(RAMP16.astype(np.int32) * 4), "I")
    with pytest.raises(UnsupportedImage, match="outside 0..65535"):
        decode_square(too_big, R)


def test_float_grey_is_read_on_0_to_1_and_other_ranges_refused(tmp_path):
    path = _save(tmp_path, "f.tif", Image.fromarray((RAMP16 / 65535).astype(np.float32)), "F")
    _ramp_is_full_range(decode_square(path, R))
    wide = _save(tmp_path, "wide.tif", Image.fromarray((RAMP16 / 10).astype(np.float32)), "F")
    with pytest.raises(UnsupportedImage, match="outside 0..1"):
        decode_square(wide, R)


def test_palette_keeps_its_colours(tmp_path):
    path = _save(tmp_path, "p.png", Image.new("RGB", (R, R), (200, 30, 40)).convert("P", palette=Image.Palette.ADAPTIVE), "P")
    assert (decode_square(path, R).reshape(3, -1).T == (200, 30, 40)).all()


def test_palette_transparency_is_composited_over_white(tmp_path):
    im = Image.new("P", (R, R), 0)
    im.putpalette([0, 0, 0, 250, 10, 10] + [0] * 762)  # index 0 black, 1 red
    im.putpixel((3, 4), 1)
    im.info["transparency"] = 0  # the black background is transparent
    rgb = decode_square(_save(tmp_path, "t.png", im, "P"), R)
    assert tuple(rgb[:, 4, 3]) == (250, 10, 10)
    assert (rgb[:, 0, 0] == 255).all()  # the transparent black shows as white, not as black


def test_cmyk_becomes_rgb(tmp_path):
    path = _save(tmp_path, "c.tif", Image.new("CMYK", (R, R), (0, 255, 255, 0)), "CMYK")  # full magenta + yellow: red
    assert (decode_square(path, R).reshape(3, -1).T == (255, 0, 0)).all()


def test_grey_with_alpha_is_composited_over_white(tmp_path):
    a = np.zeros((R, R, 2), np.uint8)
    a[..., 0] = 100
    a[:, : R // 2, 1] = 255  # left half opaque grey 100, right half fully transparent
    rgb = decode_square(_save(tmp_path, "la.png", Image.fromarray(a, "LA"), "LA"), R)
    assert (rgb[:, :, : R // 2] == 100).all() and (rgb[:, :, R // 2:] == 255).all()


def test_rgba_half_transparent_is_blended_with_white(tmp_path):
    rgb = decode_square(_save(tmp_path, "a.png", Image.new("RGBA", (R, R), (0, 0, 200, 128)), "RGBA"), R)
    expected = np.rint(np.array([0, 0, 200]) * 128 / 255 + 255 * (1 - 128 / 255))
    assert np.abs(rgb.reshape(3, -1).T.astype(int) - expected).max() <= 1


def test_grey_and_bilevel_keep_their_levels(tmp_path):
    assert (decode_square(_save(tmp_path, "l.png", Image.new("L", (R, R), 77), "L"), R) == 77).all()
    bits = Image.new("1", (R, R), 0)
    bits.paste(1, (0, 0, R // 2, R))
    rgb = decode_square(_save(tmp_path, "b.png", bits, "1"), R)
    assert (rgb[:, :, : R // 2] == 255).all() and (rgb[:, :, R // 2:] == 0).all()


def test_a_folder_data_set_refuses_an_unusable_image_by_name(tmp_path):
    root = tmp_path / "data"
    for cls in ("a", "b"):
        for k in range(3):
            (root / "d" / "train" / cls).mkdir(parents=True, exist_ok=True)
            Image.new("L", (R, R), 40 * k).save(root / "d" / "train" / cls / f"{k}.png")
    bad = root / "d" / "train" / "a" / "wide.tif"
    Image.fromarray(np.full((R, R), 7.5, np.float32)).save(bad)
    with pytest.raises(MpnasError, match=rf"{bad}: unsupported image \(floating-point pixels outside 0..1"):
        load_domains(f"folder:{root}", resolution=R, cache_dir=str(tmp_path / "cache"), progress=False)
