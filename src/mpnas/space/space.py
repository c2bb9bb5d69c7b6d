"""The MobileNetV3-like search space and a path through it, as plain JSON-serialisable data.

A `SearchSpace` says what can be chosen; a `Path` says what one domain chose. The decisions follow TuNAS's
MobileNetV3-like space (REFERENCE.md): the stem's output filters and, where a space searches it, the stem
conv's kernel; per block the output filters; per layer the depthwise kernel, the expansion ratio,
squeeze-and-excite on or off, and for every layer after the first of a block an independent skip. Output
filters are one decision per block because the identity skips and residual adds inside a block need equal
widths (TuNAS does the same). A block that `keeps_width` has no filters decision of its own: it outputs the
width it is given, which is how TuNAS's stem block shares its conv's filters with the optional separable conv
after it (and why that block's only layer may be skipped).

`geometry()` is the one place that turns a path into channel widths and feature-map sizes (the shapes it
returns are `mpnas.space.geometry`'s); the modules, the cost model and the reports all read those numbers from it.
"""

from __future__ import annotations

import builtins
import math
import random
from dataclasses import dataclass
from typing import Any, Iterator

from mpnas.errors import MpnasError
from mpnas.space.geometry import ConvGeometry, HeadGeometry, LayerGeometry, PathGeometry, conv_out, make_divisible

ACTIVATIONS = ("relu", "hswish", "swish")
SKIP = "skip"
# The stem conv's (block, layer) address. The stem-kernel decision belongs to it so that what is keyed by layer
# (the search's op warm-up, which mixes a layer's kernel options) treats the stem conv as the layer before the
# first block instead of needing a case of its own.
STEM_LAYER = (-1, 0)


# ---------------------------------------------------------------------------------------------------------
# What can be chosen.


@dataclass(frozen=True)
class LayerSpace:
    stride: int
    act: str
    kernels: tuple[int, ...]
    expansions: tuple[float, ...]
    se: tuple[bool, ...]
    skippable: bool


@dataclass(frozen=True)
class BlockSpace:
    filters: tuple[int, ...]  # output filter choices, multiples of 8
    layers: tuple[LayerSpace, ...]
    # The block outputs its input width: no filters decision; `filters` then lists the input's options.
    keeps_width: bool = False


@dataclass(frozen=True)
class SearchSpace:
    name: str
    resolution: int
    stem_filters: tuple[int, ...]
    blocks: tuple[BlockSpace, ...]
    head_filters: int  # the 1x1 conv after the last block
    head_hidden: int  # the fully connected layer after pooling; 0 for none
    stem_kernels: tuple[int, ...] = (3,)  # more than one: a decision (TuNAS searches 3 and 5)
    stem_stride: int = 2
    stem_act: str = "hswish"
    head_act: str = "hswish"
    se_ratio: float = 0.25

    # -- decisions ----------------------------------------------------------------------------------------
    def decisions(self) -> list[Decision]:
        """Every choice with more than one option, in path order. Fixed values are not decisions."""
        out: list[Decision] = []
        if len(self.stem_filters) > 1:
            out.append(Decision("stem.filters", self.stem_filters, "filters"))
        if len(self.stem_kernels) > 1:
            out.append(Decision("stem.kernel", self.stem_kernels, "kernel", STEM_LAYER))
        for b, block in enumerate(self.blocks):
            if len(block.filters) > 1 and not block.keeps_width:
                out.append(Decision(f"b{b}.filters", block.filters, "filters", block=b))
            for l, layer in enumerate(block.layers):
                cond = (b, l) if layer.skippable else None
                if layer.skippable:
                    out.append(Decision(f"b{b}.l{l}.skip", (False, True), "skip", (b, l)))
                for name, opts in (("kernel", layer.kernels), ("expansion", layer.expansions), ("se", layer.se)):
                    if len(opts) > 1:
                        out.append(Decision(f"b{b}.l{l}.{name}", opts, name, (b, l), cond))
        return out

    def path_from_choices(self, choices: dict[str, Any]) -> Path:
        """Build a path from decision values (keys of `decisions()`); fixed values fill the rest."""

        def pick(key: str, opts: tuple[Any, ...]) -> Any:
            return choices[key] if len(opts) > 1 else opts[0]

        stem = width = pick("stem.filters", self.stem_filters)
        blocks = []
        for b, block in enumerate(self.blocks):
            layers: list[LayerChoice | None] = []
            for l, layer in enumerate(block.layers):
                if layer.skippable and choices[f"b{b}.l{l}.skip"]:
                    layers.append(None)
                    continue
                layers.append(
                    LayerChoice(
                        kernel=pick(f"b{b}.l{l}.kernel", layer.kernels),
                        expansion=pick(f"b{b}.l{l}.expansion", layer.expansions),
                        se=pick(f"b{b}.l{l}.se", layer.se),
                    )
                )
            width = width if block.keeps_width else pick(f"b{b}.filters", block.filters)
            blocks.append(BlockChoice(width, tuple(layers)))
        stem_kernel = choices["stem.kernel"] if len(self.stem_kernels) > 1 else None
        return Path(stem, tuple(blocks), stem_kernel)

    def choices_of(self, path: Path) -> dict[str, Any]:
        """The inverse of `path_from_choices`; decisions inside a skipped layer are absent."""
        out: dict[str, Any] = {}
        if len(self.stem_filters) > 1:
            out["stem.filters"] = path.stem_filters
        if len(self.stem_kernels) > 1:
            out["stem.kernel"] = path.stem_kernel
        for b, (block, bc) in enumerate(zip(self.blocks, path.blocks)):
            if len(block.filters) > 1 and not block.keeps_width:
                out[f"b{b}.filters"] = bc.filters
            for l, (layer, lc) in enumerate(zip(block.layers, bc.layers)):
                if layer.skippable:
                    out[f"b{b}.l{l}.skip"] = lc is None
                if lc is None:
                    continue
                for name, opts in (("kernel", layer.kernels), ("expansion", layer.expansions), ("se", layer.se)):
                    if len(opts) > 1:
                        out[f"b{b}.l{l}.{name}"] = getattr(lc, name)
        return out

    def num_architectures(self) -> int:
        total = len(self.stem_filters) * len(self.stem_kernels)
        for block in self.blocks:
            total *= 1 if block.keeps_width else len(block.filters)
            for layer in block.layers:
                ops = len(layer.kernels) * len(layer.expansions) * len(layer.se)
                total *= ops + (1 if layer.skippable else 0)
        return total

    def reference_path(self) -> Path:
        """The middle option of every decision, no layer skipped: the default cost target T0 is its cost."""
        choices = {}
        for d in self.decisions():
            choices[d.key] = False if d.kind == "skip" else d.options[(len(d.options) - 1) // 2]
        return self.path_from_choices(choices)

    def random_path(self, rng: random.Random) -> Path:
        """Every decision drawn uniformly and independently (the MRP baseline, warm-up, tests)."""
        return self.path_from_choices({d.key: rng.choice(d.options) for d in self.decisions()})

    def largest_path(self) -> Path:
        choices = {}
        for d in self.decisions():
            choices[d.key] = False if d.kind == "skip" else max(d.options)
        return self.path_from_choices(choices)

    # -- geometry ---------------------------------------------------------------------------------------
    def geometry(self, path: Path) -> PathGeometry:
        """Channel widths and feature-map sizes of every module on a path."""
        res = conv_out(self.resolution, self.stem_stride)
        stem = ConvGeometry(3, path.stem_filters, self.stem_kernel_of(path), self.stem_stride, self.resolution, res,
                            self.stem_act)
        layers = []
        in_ch = path.stem_filters
        for b, bc in enumerate(path.blocks):
            for l, lc in enumerate(bc.layers):
                if lc is None:
                    continue
                g = self.layer_geometry(b, l, lc, in_ch, bc.filters, res)
                layers.append(g)
                in_ch, res = g.out_ch, g.out_res
        head = HeadGeometry(in_ch, self.head_filters, self.head_hidden, res, self.head_act)
        return PathGeometry(stem, tuple(layers), head)

    def layer_geometry(self, b: int, l: int, lc: LayerChoice, in_ch: int, out_ch: int, in_res: int) -> LayerGeometry:
        """One kept layer's shapes, given what reaches it (`geometry` calls it for every layer of a path; the
        add-domain constraint, `mpnas.space.extension.Admissible`, for layers of paths not yet complete)."""
        layer = self.blocks[b].layers[l]
        # An expansion of 1 has no expand conv (MobileNetV3), whatever the input width: a slimmed input
        # (`mpnas.space.widths`) need not be a multiple of 8, and rounding it would add a conv.
        exp_ch = in_ch if lc.expansion == 1 else make_divisible(in_ch * lc.expansion)
        return LayerGeometry(block=b, layer=l, in_ch=in_ch, exp_ch=exp_ch, out_ch=out_ch, kernel=lc.kernel,
                             se_ch=make_divisible(exp_ch * self.se_ratio) if lc.se else 0, stride=layer.stride,
                             act=layer.act, in_res=in_res, out_res=conv_out(in_res, layer.stride))

    def stem_kernel_of(self, path: Path) -> int:
        """The stem conv's kernel on `path`: its choice when the space searches the kernel, else the only one."""
        if len(self.stem_kernels) == 1:
            return self.stem_kernels[0]
        k = path.stem_kernel
        if k is None or k not in self.stem_kernels:
            raise MpnasError(f"path: stem kernel {k} not in {list(self.stem_kernels)}")
        return k

    # -- serialisation ----------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        # A single stem kernel is written as "stem_kernel", several as "stem_kernels", and "keeps_width" only
        # where it is true: spaces that search neither keep the JSON they had before either existed.
        stem_kernels: dict[str, Any] = (
            {"stem_kernel": self.stem_kernels[0]} if len(self.stem_kernels) == 1 else {"stem_kernels": list(self.stem_kernels)}
        )
        return {
            "name": self.name,
            "resolution": self.resolution,
            "stem_filters": list(self.stem_filters),
            **stem_kernels,
            "stem_stride": self.stem_stride,
            "stem_act": self.stem_act,
            "head_filters": self.head_filters,
            "head_hidden": self.head_hidden,
            "head_act": self.head_act,
            "se_ratio": self.se_ratio,
            "blocks": [
                {
                    "filters": list(bl.filters),
                    **({"keeps_width": True} if bl.keeps_width else {}),
                    "layers": [
                        {
                            "stride": la.stride,
                            "act": la.act,
                            "kernels": list(la.kernels),
                            "expansions": list(la.expansions),
                            "se": list(la.se),
                            "skippable": la.skippable,
                        }
                        for la in bl.layers
                    ],
                }
                for bl in self.blocks
            ],
        }

    @staticmethod
    def from_dict(data: Any, where: str = "space") -> SearchSpace:
        r = _Reader(data, where)
        blocks = []
        for b, bd in enumerate(r.list("blocks")):
            br = _Reader(bd, f"{where}.blocks[{b}]")
            layers = []
            for l, ld in enumerate(br.list("layers")):
                lr = _Reader(ld, f"{where}.blocks[{b}].layers[{l}]")
                layers.append(
                    LayerSpace(
                        stride=lr.int("stride"),
                        act=lr.str("act"),
                        kernels=tuple(lr.ints("kernels")),
                        expansions=tuple(lr.numbers("expansions")),
                        se=tuple(lr.bools("se")),
                        skippable=lr.bool("skippable"),
                    )
                )
            keeps_width = br.bool("keeps_width") if "keeps_width" in br.data else False
            blocks.append(BlockSpace(tuple(br.ints("filters")), tuple(layers), keeps_width))
        if ("stem_kernel" in r.data) == ("stem_kernels" in r.data):
            raise MpnasError(f"{where}: needs exactly one of 'stem_kernel' (one option) and 'stem_kernels' (a list)")
        stem_kernels = (r.int("stem_kernel"),) if "stem_kernel" in r.data else tuple(r.ints("stem_kernels"))
        space = SearchSpace(
            name=r.str("name"),
            resolution=r.int("resolution"),
            stem_filters=tuple(r.ints("stem_filters")),
            blocks=tuple(blocks),
            head_filters=r.int("head_filters"),
            head_hidden=r.int("head_hidden"),
            stem_kernels=stem_kernels,
            stem_stride=r.int("stem_stride"),
            stem_act=r.str("stem_act"),
            head_act=r.str("head_act"),
            se_ratio=float(r.number("se_ratio")),
        )
        space.validate(where)
        return space

    def validate(self, where: str = "space") -> None:
        def need(ok: bool, msg: str) -> None:
            if not ok:
                raise MpnasError(f"{where}: {msg}")

        need(self.resolution >= 8, f"resolution {self.resolution} is below 8")
        need(bool(self.stem_filters) and all(f > 0 for f in self.stem_filters), "stem_filters must be positive")
        need(bool(self.stem_kernels) and all(k > 0 and k % 2 == 1 for k in self.stem_kernels),
             f"stem kernels {list(self.stem_kernels)} must be odd")
        need(len(set(self.stem_kernels)) == len(self.stem_kernels), "duplicate stem kernels")
        need(self.stem_act in ACTIVATIONS and self.head_act in ACTIVATIONS, f"activations must be in {ACTIVATIONS}")
        need(len(self.blocks) > 0, "no blocks")
        need(self.head_filters > 0 and self.head_hidden >= 0, "head_filters must be > 0 and head_hidden >= 0")
        for b, block in enumerate(self.blocks):
            need(bool(block.filters) and all(f > 0 for f in block.filters), f"block {b}: filters must be positive")
            need(len(block.layers) > 0, f"block {b}: no layers")
            given = self.stem_filters if b == 0 else self.blocks[b - 1].filters
            need(not block.keeps_width or block.filters == given,
                 f"block {b}: keeps its input width, so its filters must be {list(given)}")
            # A skipped layer is the identity, which only a layer that keeps width and resolution can be.
            need(not block.layers[0].skippable or (block.keeps_width and block.layers[0].stride == 1),
                 f"block {b}: its first layer cannot be skippable (only in a block that keeps width, at stride 1)")
            for l, layer in enumerate(block.layers):
                at = f"block {b} layer {l}"
                need(layer.stride in (1, 2), f"{at}: stride {layer.stride} not in (1, 2)")
                need(l == 0 or layer.stride == 1, f"{at}: only a block's first layer may have stride 2")
                need(layer.act in ACTIVATIONS, f"{at}: activation {layer.act!r} not in {ACTIVATIONS}")
                need(bool(layer.kernels) and all(k % 2 == 1 and k > 0 for k in layer.kernels), f"{at}: kernels must be odd")
                need(bool(layer.expansions) and all(e >= 1 for e in layer.expansions), f"{at}: expansions must be >= 1")
                need(bool(layer.se), f"{at}: se needs at least one option")
                for name, opts in (("kernels", layer.kernels), ("expansions", layer.expansions), ("se", layer.se)):
                    need(len(set(opts)) == len(opts), f"{at}: duplicate {name}")


@dataclass(frozen=True)
class Decision:
    key: str
    options: tuple[Any, ...]  # ints (filters, kernels), floats (expansions) or bools (se, skip)
    kind: str  # "filters" (a block's or the stem's output), "expansion", "kernel", "se" or "skip"
    # The (block, layer) the decision belongs to (STEM_LAYER for the stem's kernel); None for filters.
    layer: tuple[int, int] | None = None
    # The (block, layer) whose skip decision gates this one: when that layer is skipped the decision has no
    # effect, so a controller leaves it out of the log-probability (hierarchical sampling).
    gated_by: tuple[int, int] | None = None
    # The block whose output width a filters decision sets; None for the stem's filters and for layer decisions.
    block: int | None = None

    @property
    def position(self) -> tuple[int, int]:
        """Where the decision acts, ordered as the network runs: (-1, -1) for the stem's filters, `layer` for a
        layer's (the stem's kernel is STEM_LAYER), and (block, -1) for a block's filters, which set the width before
        its first layer."""
        if self.layer is not None:
            return self.layer
        return (-1, -1) if self.block is None else (self.block, -1)

    @property
    def skip_key(self) -> str | None:
        return None if self.gated_by is None else f"b{self.gated_by[0]}.l{self.gated_by[1]}.skip"


# ---------------------------------------------------------------------------------------------------------
# What was chosen.


@dataclass(frozen=True)
class LayerChoice:
    kernel: int
    expansion: float
    se: bool


@dataclass(frozen=True)
class BlockChoice:
    filters: int
    layers: tuple[LayerChoice | None, ...]  # None: the layer is skipped (identity)


@dataclass(frozen=True)
class Path:
    stem_filters: int
    blocks: tuple[BlockChoice, ...]
    # None when the space has a single stem kernel (no decision, as for every space before TuNAS's stem was
    # searched): the kernel is then the space's, and such paths keep the JSON they always had.
    stem_kernel: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "stem_filters": self.stem_filters,
            **({} if self.stem_kernel is None else {"stem_kernel": self.stem_kernel}),
            "blocks": [
                {
                    "filters": bc.filters,
                    "layers": [
                        SKIP if lc is None else {"kernel": lc.kernel, "expansion": lc.expansion, "se": lc.se}
                        for lc in bc.layers
                    ],
                }
                for bc in self.blocks
            ],
        }

    @staticmethod
    def from_dict(data: Any, space: SearchSpace, where: str = "path") -> Path:
        """Parse and validate against `space`; every error names the block, layer and field."""
        r = _Reader(data, where)
        blocks_data = r.list("blocks")
        if len(blocks_data) != len(space.blocks):
            raise MpnasError(f"{where}: {len(blocks_data)} blocks, the space has {len(space.blocks)}")
        stem = r.int("stem_filters")
        if stem not in space.stem_filters:
            raise MpnasError(f"{where}: stem_filters {stem} not in {list(space.stem_filters)}")
        stem_kernel = None
        if len(space.stem_kernels) > 1:
            stem_kernel = r.int("stem_kernel")
            if stem_kernel not in space.stem_kernels:
                raise MpnasError(f"{where}: stem_kernel {stem_kernel} not in {list(space.stem_kernels)}")
        elif "stem_kernel" in r.data and r.int("stem_kernel") != space.stem_kernels[0]:
            raise MpnasError(f"{where}: stem_kernel {r.data['stem_kernel']} is not the space's {space.stem_kernels[0]}")
        width = stem
        blocks = []
        for b, (bd, bs) in enumerate(zip(blocks_data, space.blocks)):
            at = f"{where} block {b}"
            br = _Reader(bd, at)
            filters = br.int("filters")
            if filters not in bs.filters:
                raise MpnasError(f"{at}: filters {filters} not in {list(bs.filters)}")
            if bs.keeps_width and filters != width:
                raise MpnasError(f"{at}: filters {filters} must equal its input width {width} (the block keeps it)")
            width = filters
            layers_data = br.list("layers")
            if len(layers_data) != len(bs.layers):
                raise MpnasError(f"{at}: {len(layers_data)} layers, the space has {len(bs.layers)}")
            layers: list[LayerChoice | None] = []
            for l, (ld, ls) in enumerate(zip(layers_data, bs.layers)):
                lat = f"{at} layer {l}"
                if ld == SKIP:
                    if not ls.skippable:
                        raise MpnasError(f"{lat}: cannot be skipped (only layers after a block's first can, or the "
                                         "first of a block that keeps its width)")
                    layers.append(None)
                    continue
                lr = _Reader(ld, lat)
                kernel, expansion, se = lr.int("kernel"), lr.number("expansion"), lr.bool("se")
                if kernel not in ls.kernels:
                    raise MpnasError(f"{lat}: kernel {kernel} not in {list(ls.kernels)}")
                if not any(math.isclose(expansion, e) for e in ls.expansions):
                    raise MpnasError(f"{lat}: expansion {expansion} not in {list(ls.expansions)}")
                if se not in ls.se:
                    raise MpnasError(f"{lat}: se {se} not allowed (options {list(ls.se)})")
                expansion = next(e for e in ls.expansions if math.isclose(expansion, e))
                layers.append(LayerChoice(kernel, expansion, se))
            blocks.append(BlockChoice(filters, tuple(layers)))
        return Path(stem, tuple(blocks), stem_kernel)


# ---------------------------------------------------------------------------------------------------------
# A small reader that turns malformed JSON into errors naming the field.


@dataclass
class _Reader:
    # Its readers are named after the JSON types they read (`str`, `int`, `list`, ...), so annotations in the
    # class body spell the built-in types as `builtins.*`.
    data: Any
    where: str

    def __post_init__(self) -> None:
        if not isinstance(self.data, dict):
            raise MpnasError(f"{self.where}: expected an object, got {type(self.data).__name__}")

    def _get(self, key: builtins.str) -> Any:
        if key not in self.data:
            raise MpnasError(f"{self.where}: missing field {key!r}")
        return self.data[key]

    def int(self, key: builtins.str) -> builtins.int:
        v = self._get(key)
        if isinstance(v, bool) or not isinstance(v, int):
            raise MpnasError(f"{self.where}: field {key!r} must be an integer, got {v!r}")
        return v

    def number(self, key: builtins.str) -> float:
        v = self._get(key)
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise MpnasError(f"{self.where}: field {key!r} must be a number, got {v!r}")
        return v

    def bool(self, key: builtins.str) -> builtins.bool:
        v = self._get(key)
        if not isinstance(v, bool):
            raise MpnasError(f"{self.where}: field {key!r} must be true or false, got {v!r}")
        return v

    def str(self, key: builtins.str) -> builtins.str:
        v = self._get(key)
        if not isinstance(v, str):
            raise MpnasError(f"{self.where}: field {key!r} must be a string, got {v!r}")
        return v

    def list(self, key: builtins.str) -> builtins.list[Any]:
        v = self._get(key)
        if not isinstance(v, list):
            raise MpnasError(f"{self.where}: field {key!r} must be a list, got {type(v).__name__}")
        return v

    def ints(self, key: builtins.str) -> builtins.list[builtins.int]:
        v = self.list(key)
        if not v or any(isinstance(x, bool) or not isinstance(x, int) for x in v):
            raise MpnasError(f"{self.where}: field {key!r} must be a non-empty list of integers")
        return v

    def numbers(self, key: builtins.str) -> builtins.list[float]:
        v = self.list(key)
        if not v or any(isinstance(x, bool) or not isinstance(x, (int, float)) for x in v):
            raise MpnasError(f"{self.where}: field {key!r} must be a non-empty list of numbers")
        return v

    def bools(self, key: builtins.str) -> builtins.list[builtins.bool]:
        v = self.list(key)
        if not v or any(not isinstance(x, bool) for x in v):
            raise MpnasError(f"{self.where}: field {key!r} must be a non-empty list of true/false")
        return v


def iter_layers(space: SearchSpace) -> Iterator[tuple[int, int, LayerSpace]]:
    for b, block in enumerate(space.blocks):
        for l, layer in enumerate(block.layers):
            yield b, l, layer
