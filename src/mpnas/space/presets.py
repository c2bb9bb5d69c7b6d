"""Named search spaces: the small CPU default, the TuNAS/paper-sized space, and MobileNetV3-Large/Small.

The published models are spaces with a single option per decision, so the same code path that builds a
searched architecture builds them, and their parameter counts check the builder against torchvision's.
"""

from __future__ import annotations

from dataclasses import replace

from mpnas.config import SPACE_PRESETS
from mpnas.errors import MpnasError
from mpnas.space.space import BlockSpace, LayerSpace, SearchSpace, make_divisible

PRESETS = SPACE_PRESETS

# TuNAS's output-width multipliers (REFERENCE.md).
TUNAS_MULTIPLIERS = (0.5, 0.625, 0.75, 1.0, 1.25, 1.5, 2.0)


def _widths(base: int, mults: tuple[float, ...]) -> tuple[int, ...]:
    return tuple(sorted({make_divisible(base * m) for m in mults}))


def _searchable_block(
    filters: tuple[int, ...],
    stride: int,
    act: str,
    layers: int,
    kernels: tuple[int, ...],
    expansions: tuple[float, ...],
    se: tuple[bool, ...] = (False, True),
) -> BlockSpace:
    first = LayerSpace(stride, act, kernels, expansions, se, skippable=False)
    rest = LayerSpace(1, act, kernels, expansions, se, skippable=True)
    return BlockSpace(filters, (first,) + (rest,) * (layers - 1))


def default_space(resolution: int = 32) -> SearchSpace:
    """A small space for 32 px images on a CPU: 4 searchable blocks of 3 layers, widths up to 128."""
    k, e = (3, 5, 7), (2.0, 4.0, 6.0)
    b0 = BlockSpace((16,), (LayerSpace(1, "relu", k, (1.0,), (False, True), skippable=False),))
    body = (
        _searchable_block((16, 24, 32), 2, "relu", 3, k, e),
        _searchable_block((24, 40, 48), 2, "relu", 3, k, e),
        _searchable_block((48, 64, 80), 1, "hswish", 3, k, e),
        _searchable_block((64, 96, 128), 2, "hswish", 3, k, e),
    )
    return SearchSpace(
        name="default",
        resolution=resolution,
        stem_filters=(16,),
        blocks=(b0,) + body,
        head_filters=256,
        head_hidden=512,
    )


def paper_space(resolution: int = 224) -> SearchSpace:
    """TuNAS's MobileNetV3-like space as used by the paper: 5 searchable blocks of 4 layers, ~1e38 paths."""
    k, e = (3, 5, 7), (1.0, 2.0, 3.0, 4.0, 5.0, 6.0)
    b0 = BlockSpace(_widths(16, TUNAS_MULTIPLIERS), (LayerSpace(1, "relu", k, (1.0,), (False, True), False),))
    strides, acts = (2, 2, 2, 1, 2), ("relu", "relu", "swish", "swish", "swish")
    body = tuple(
        _searchable_block(_widths(base, TUNAS_MULTIPLIERS), s, a, 4, k, e)
        for base, s, a in zip((32, 64, 128, 256, 512), strides, acts)
    )
    return SearchSpace(
        name="paper",
        resolution=resolution,
        stem_filters=_widths(16, TUNAS_MULTIPLIERS),
        blocks=(b0,) + body,
        head_filters=1024,
        head_hidden=1280,
        head_act="swish",
        stem_act="swish",
    )


def _fixed_block(filters: int, rows: list[tuple[int, float, bool, str, int]]) -> BlockSpace:
    """rows: (kernel, expansion, se, act, stride) per layer."""
    return BlockSpace(
        (filters,),
        tuple(LayerSpace(s, a, (k,), (e,), (se,), skippable=False) for k, e, se, a, s in rows),
    )


def mobilenet_v3_large(resolution: int = 224) -> SearchSpace:
    # Expansions are the published expanded widths divided by the input width (e.g. 200/80 = 2.5).
    R, H = "relu", "hswish"
    blocks = (
        _fixed_block(16, [(3, 1, False, R, 1)]),
        _fixed_block(24, [(3, 4, False, R, 2), (3, 3, False, R, 1)]),
        _fixed_block(40, [(5, 3, True, R, 2), (5, 3, True, R, 1), (5, 3, True, R, 1)]),
        _fixed_block(80, [(3, 6, False, H, 2), (3, 2.5, False, H, 1), (3, 2.3, False, H, 1), (3, 2.3, False, H, 1)]),
        _fixed_block(112, [(3, 6, True, H, 1), (3, 6, True, H, 1)]),
        _fixed_block(160, [(5, 6, True, H, 2), (5, 6, True, H, 1), (5, 6, True, H, 1)]),
    )
    return SearchSpace("mobilenet_v3_large", resolution, (16,), blocks, head_filters=960, head_hidden=1280)


def mobilenet_v3_small(resolution: int = 224) -> SearchSpace:
    R, H = "relu", "hswish"
    blocks = (
        _fixed_block(16, [(3, 1, True, R, 2)]),
        _fixed_block(24, [(3, 4.5, False, R, 2), (3, 88 / 24, False, R, 1)]),
        _fixed_block(40, [(5, 4, True, H, 2), (5, 6, True, H, 1), (5, 6, True, H, 1)]),
        _fixed_block(48, [(5, 3, True, H, 1), (5, 3, True, H, 1)]),
        _fixed_block(96, [(5, 6, True, H, 2), (5, 6, True, H, 1), (5, 6, True, H, 1)]),
    )
    return SearchSpace("mobilenet_v3_small", resolution, (16,), blocks, head_filters=576, head_hidden=1024)


_BUILDERS = {
    "default": default_space,
    "paper": paper_space,
    "mobilenet_v3_large": mobilenet_v3_large,
    "mobilenet_v3_small": mobilenet_v3_small,
}


def get_space(
    preset: str,
    resolution: int | None = None,
    width_mult: float = 1.0,
    layers_per_block: int | None = None,
) -> SearchSpace:
    """A named space, optionally at another resolution, width multiplier or depth (searchable spaces only)."""
    if preset not in _BUILDERS:
        raise MpnasError(f"space preset {preset!r} unknown; choose one of {', '.join(PRESETS)}")
    space = _BUILDERS[preset]() if resolution is None else _BUILDERS[preset](resolution)
    if width_mult <= 0:
        raise MpnasError(f"space width_mult must be positive, got {width_mult}")
    if width_mult != 1.0:
        scale = lambda fs: tuple(sorted({make_divisible(f * width_mult) for f in fs}))  # noqa: E731
        space = replace(
            space,
            stem_filters=scale(space.stem_filters),
            blocks=tuple(replace(b, filters=scale(b.filters)) for b in space.blocks),
            head_filters=make_divisible(space.head_filters * max(1.0, width_mult)),
        )
    if layers_per_block is not None:
        if preset.startswith("mobilenet_v3"):
            raise MpnasError(f"space {preset}: layers_per_block applies to searchable spaces only")
        if layers_per_block < 1:
            raise MpnasError(f"space layers_per_block must be >= 1, got {layers_per_block}")
        blocks = [space.blocks[0]]
        for b in space.blocks[1:]:
            first, rest = b.layers[0], replace(b.layers[0], stride=1, skippable=True)
            blocks.append(replace(b, layers=(first,) + (rest,) * (layers_per_block - 1)))
        space = replace(space, blocks=tuple(blocks))
    space.validate(f"space {preset}")
    return space
