"""Named search spaces: the small CPU default (and its 4x4-map variant), TuNAS's space (`paper`), and MobileNetV3-Large/Small.

The published models are spaces with a single option per decision, so the same code path that builds a
searched architecture builds them, and their parameter counts check the builder against torchvision's.
"""

from __future__ import annotations

from dataclasses import replace

from mpnas.config import SPACE_PRESETS, RunConfig
from mpnas.errors import MpnasError
from mpnas.space.geometry import make_divisible
from mpnas.space.space import BlockSpace, LayerSpace, SearchSpace

PRESETS = SPACE_PRESETS

# TuNAS's output-width multipliers (REFERENCE.md).
TUNAS_MULTIPLIERS = (0.5, 0.625, 0.75, 1.0, 1.25, 1.5, 2.0)


def tunas_widths(base: int, mults: tuple[float, ...] = TUNAS_MULTIPLIERS) -> tuple[int, ...]:
    """`base` times each multiplier, rounded half up to a multiple of 8 (at least 8), sorted and deduplicated.

    This is TuNAS's `scale_filters` (filters_base 8), not MobileNet's `make_divisible`: the two differ on
    single widths (16 x 0.625 = 10 gives 8 here, 16 there), so the paper space uses TuNAS's rule to have
    TuNAS's options.
    """
    return tuple(sorted({max(8, int(base * m / 8 + 0.5) * 8) for m in mults}))


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


def _small_space(name: str, resolution: int, late: tuple[tuple[tuple[int, ...], int], ...]) -> SearchSpace:
    """The CPU spaces: a fixed 16-wide first block, two ReLU blocks that halve the map, then hard-swish blocks
    of `late` (filters, first stride); every searchable block has 3 layers, kernels 3/5/7, expansions 2/4/6."""
    k, e = (3, 5, 7), (2.0, 4.0, 6.0)
    b0 = BlockSpace((16,), (LayerSpace(1, "relu", k, (1.0,), (False, True), skippable=False),))
    body = (
        _searchable_block((16, 24, 32), 2, "relu", 3, k, e),
        _searchable_block((24, 40, 48), 2, "relu", 3, k, e),
        *(_searchable_block(filters, stride, "hswish", 3, k, e) for filters, stride in late),
    )
    return SearchSpace(name=name, resolution=resolution, stem_filters=(16,), blocks=(b0,) + body, head_filters=256,
                       head_hidden=512)


def default_space(resolution: int = 32) -> SearchSpace:
    """A small space for 32 px images on a CPU: 4 searchable blocks of 3 layers, widths up to 128."""
    return _small_space("default", resolution, (((48, 64, 80), 1), ((64, 96, 128), 2)))


def default_4x4_space(resolution: int = 32) -> SearchSpace:
    """The default space with its last downsample removed (issue 27's candidate for 32 px images).

    In `default` a 32 px image ends at a 2x2 map: block 4 works at 2x2 and block 3 at 4x4, where kernels of 3, 5
    and 7 see the same whole map, so their choice is nearly the same op and equal-cost paths differ mostly in
    width, expansion and SE. Here block 4 keeps stride 1, so the last two blocks work at 4x4 (as the SPOS
    maintainers advise for 32x32 inputs: fewer downsamples). Blocks 3 and 4 are narrower so that the space's
    reference path (middle options) costs what `default`'s does (5.20 M against 5.29 M MACs at 10 classes)."""
    return _small_space("default-4x4", resolution, (((32, 48, 64), 1), ((40, 56, 72), 1)))


def paper_space(resolution: int = 224) -> SearchSpace:
    """TuNAS's `mobilenet_v3_like_search` (tunas/mobile_search_space_v3.py), the space the paper searches.

    Stem: a 3x3 or 5x5 conv (a decision), stride 2, hard-swish ("swish6" in TuNAS), 16 x multipliers filters;
    then TuNAS's optional residual separable conv (depthwise 3, 5 or 7, ReLU, then 1x1), which shares the
    stem's filters: here block 0, a block that keeps its input width and whose only layer (expansion 1, so no
    expand conv, and no SE: a separable conv) may be skipped. Body: five blocks of base widths 16, 32, 64, 128
    and 256, first-layer strides 2, 2, 2, 1, 2, ReLU in the first two and hard-swish after, each one fixed
    layer and three independently skippable ones, with kernels 3, 5, 7, expansions 1 to 6 and SE searched.
    Every searched width is base x (0.5 ... 2.0) rounded as TuNAS rounds (`tunas_widths`).

    Where it departs from TuNAS: the head is fixed at the base widths (a 1x1 conv to 512 with batch norm and
    hard-swish, pooling, then a fully connected layer to 1024 with hard-swish), where TuNAS also scales both by
    the multipliers (7 x 7 more architectures); searching them would make the head a dynamic module in the
    supernet, the merged model, the cost model and the latency tables for two more decisions (86, not 84). As in the
    other spaces, a body layer of expansion 1 has no expand conv (TuNAS keeps a 1x1 conv there), and SE gates
    with a hard sigmoid (TuNAS: sigmoid).
    """
    k, e = (3, 5, 7), (1.0, 2.0, 3.0, 4.0, 5.0, 6.0)
    stem = tunas_widths(16)
    b0 = BlockSpace(stem, (LayerSpace(1, "relu", k, (1.0,), (False,), skippable=True),), keeps_width=True)
    strides, acts = (2, 2, 2, 1, 2), ("relu", "relu", "hswish", "hswish", "hswish")
    body = tuple(
        _searchable_block(tunas_widths(base), s, a, 4, k, e)
        for base, s, a in zip((16, 32, 64, 128, 256), strides, acts)
    )
    return SearchSpace(
        name="paper",
        resolution=resolution,
        stem_filters=stem,
        blocks=(b0,) + body,
        head_filters=512,
        head_hidden=1024,
        stem_kernels=(3, 5),
        stem_act="hswish",
        head_act="hswish",
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
    "default-4x4": default_4x4_space,
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


def build_space(cfg: RunConfig) -> SearchSpace:
    """The search space a run's config describes (`space.preset` at the data's resolution)."""
    return get_space(cfg.space.preset, cfg.data.resolution, cfg.space.width_mult, cfg.space.layers_per_block)
