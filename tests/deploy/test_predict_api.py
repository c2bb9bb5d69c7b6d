"""`mpnas.load(run).predict(images, domain, k=3)` as the README documents it: one image or a list of them, each a
path, PIL image, H x W or H x W x C array, or tensor, with the CLI's default k."""

from __future__ import annotations

import inspect

import numpy as np
import pytest
import torch
from PIL import Image

import mpnas
from mpnas.cli import build_parser
from mpnas.errors import MpnasError


@pytest.fixture(scope="module")
def model(trained_run):
    return mpnas.load(trained_run)


@pytest.fixture(scope="module")
def files(tiny_root):
    return sorted((tiny_root / "bars" / "test").rglob("*.png"))[:3]


@pytest.fixture(scope="module")
def expected(model, files):
    """Each file's top 3 when given as a list of paths."""
    return model.predict([str(f) for f in files], "bars", k=3)


def test_k_is_a_keyword_and_the_default_is_the_clis(model, files, expected):
    assert len(expected) == len(files) and all(len(top) == 3 for top in expected)
    assert model.predict(files, "bars", k=2) == [top[:2] for top in expected]
    default = inspect.signature(type(model).predict).parameters["k"].default
    cli = build_parser().parse_args(["predict", "--run", "r", "--domain", "d", "x.png"]).top_k
    assert default == cli == mpnas.DEFAULT_TOP_K == 3
    assert model.predict(files[0], "bars") == expected[0]  # default k: 3 classes


@pytest.mark.parametrize("kind", ["str", "path", "pil", "array_hwc", "tensor_chw"])
def test_one_image_of_each_kind_gives_that_images_prediction(model, files, expected, kind):
    f = files[0]
    rgb = np.array(Image.open(f).convert("RGB"))
    image = {"str": str(f), "path": f, "pil": Image.open(f), "array_hwc": rgb,
             "tensor_chw": torch.from_numpy(rgb).permute(2, 0, 1)}[kind]
    top = model.predict(image, "bars", k=3)
    assert top == expected[0]  # a single path is not read character by character, a PIL image is accepted
    assert model.probabilities(image, "bars").shape == (len(model.info("bars").classes),)


def test_a_list_of_mixed_kinds_gives_one_prediction_each(model, files, expected):
    rgb = [np.array(Image.open(f).convert("RGB")) for f in files]
    mixed = [str(files[0]), Image.open(files[1]), torch.from_numpy(rgb[2]).permute(2, 0, 1).float() / 255]
    got = model.predict(mixed, "bars", k=3)
    assert [t[0][0] for t in got] == [t[0][0] for t in expected]
    for a, b in zip(got, expected):
        assert [p for _, p in a] == pytest.approx([p for _, p in b], abs=1e-5)
    batch = model.predict(np.stack(rgb), "bars", k=3)  # N x H x W x C: a batch, not one image
    assert batch == expected


def test_a_grey_h_x_w_array_is_one_image_not_a_list_of_rows(model, tiny_root):
    grey = np.array(Image.open(next((tiny_root / "bars" / "test").rglob("*.png"))).convert("L"))
    as_array = model.predict(grey, "bars", k=3)
    assert len(as_array) == 3 and all(isinstance(c, str) for c, _ in as_array)  # one image's top 3, not 12 rows
    assert as_array == model.predict(Image.fromarray(grey), "bars", k=3)
    assert model.predict(torch.from_numpy(grey), "bars", k=3) == as_array
    assert model.predict(grey[..., None], "bars", k=3) == as_array  # H x W x 1
    sixteen = grey.astype(np.uint16) * 257  # the same picture on the 16-bit range
    assert model.predict(sixteen, "bars", k=3) == as_array


@pytest.mark.parametrize("bad, message", [
    (np.zeros((4, 4, 5), np.uint8), r"shape \(4, 4, 5\)"),
    (np.full((4, 4), 3.0), "float values must lie in 0..1"),
    (np.zeros((4, 4), np.int64), "dtype int64"),
    (42, "cannot classify a int"),
])
def test_unusable_inputs_are_named_errors(model, bad, message):
    with pytest.raises(MpnasError, match=message):
        model.predict(bad, "bars")


def test_k_must_be_positive(model, files):
    with pytest.raises(MpnasError, match="k must be an integer >= 1"):
        model.predict(files[0], "bars", k=0)


def test_the_cli_takes_threads_and_device_and_agrees_with_the_api(trained_run, model, files, expected, capsys):
    import json

    from mpnas.cli import main

    argv = ["predict", "--run", str(trained_run), "--domain", "bars", "--json", "--threads", "1", "--device", "cpu"]
    assert main([*argv, *map(str, files)]) == 0  # --threads and --device were unrecognized arguments
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [[t["class"] for t in r["top"]] for r in rows] == [[c for c, _ in top] for top in expected]
