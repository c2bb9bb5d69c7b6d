"""Batch augmentation: crops are windows of the padded image, flips only where allowed, reproducible."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from mpnas.data import AugmentSpec, augment
from mpnas.data.augment import pad_size


def windows(image: torch.Tensor, p: int) -> list[torch.Tensor]:
    padded = F.pad(image, (p, p, p, p))
    r = image.shape[-1]
    return [padded[:, y : y + r, x : x + r] for y in range(2 * p + 1) for x in range(2 * p + 1)]


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 2**31), resolution=st.sampled_from([8, 12, 32]), flip=st.booleans())
def test_pad_crop_is_a_window_of_the_padded_image(seed, resolution, flip):
    images = torch.randint(0, 256, (6, 3, resolution, resolution), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))
    out = augment(images, AugmentSpec(flip=flip, crop="pad"), torch.Generator().manual_seed(seed))
    assert out.dtype == torch.uint8 and out.shape == images.shape
    p = pad_size(resolution)
    for img, got in zip(images, out):
        plain = any(torch.equal(got, w) for w in windows(img, p))
        mirrored = any(torch.equal(got, w) for w in windows(img.flip(-1), p))
        assert plain or (flip and mirrored)


def test_flips_happen_only_when_allowed():
    images = torch.randint(0, 256, (64, 3, 16, 16), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    for crop in ("pad", "resize"):
        kept = augment(images, AugmentSpec(flip=False, crop=crop), torch.Generator().manual_seed(1))
        flipped = augment(images, AugmentSpec(flip=True, crop=crop), torch.Generator().manual_seed(1))
        # Same draws otherwise: where the flip spec differs, exactly the mirrored samples change.
        changed = (kept.float() - flipped.float()).abs().flatten(1).amax(1) > 0
        assert 10 < int(changed.sum()) < 54, crop


def test_resized_crop_stays_inside_and_is_reproducible():
    images = torch.full((32, 3, 24, 24), 100, dtype=torch.uint8)
    images[:, 0] = 200
    spec = AugmentSpec(flip=True, crop="resize")
    a = augment(images, spec, torch.Generator().manual_seed(7))
    b = augment(images, spec, torch.Generator().manual_seed(7))
    assert a.dtype == torch.float32 and a.shape == images.shape and torch.equal(a, b)
    # A crop inside a constant image is that constant: nothing sampled from outside the picture.
    assert torch.allclose(a[:, 0], torch.tensor(200.0)) and torch.allclose(a[:, 1:], torch.tensor(100.0))
    varied = torch.randint(0, 256, (8, 3, 24, 24), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    assert not torch.equal(augment(varied, spec, torch.Generator().manual_seed(7)),
                           augment(varied, spec, torch.Generator().manual_seed(8)))


def test_resized_crop_zooms_in():
    # A centred bright square grows (or stays) under a random resized crop of 60-100% of the area.
    images = torch.zeros(64, 3, 32, 32, dtype=torch.uint8)
    images[..., 12:20, 12:20] = 255
    out = augment(images, AugmentSpec(flip=False, crop="resize"), torch.Generator().manual_seed(3))
    bright = (out[:, 0] > 127).flatten(1).sum(1).float()
    assert bright.mean() > 64 * 1.2
