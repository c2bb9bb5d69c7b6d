"""The gradient strategy's relaxation: straight-through Gumbel samples, the gates they become, and the expected
cost of a distribution over paths, all differentiable in the architecture logits.

A sample is hard: every decision takes one option (Gumbel-max, so it is distributed as the categorical
distribution of the logits), and only that option is computed, as in GDAS. Its one-hot vector is made
straight-through, `one_hot + (soft - soft.detach())`, where `soft` is the Gumbel-softmax at temperature tau:
exactly one-hot in value, with the softmax's gradient. The vectors enter the supernet as `Gates`:

- op choices (kernel, squeeze-and-excite, keep rather than skip) scale the layer's residual branch by the
  chosen option's entry. The gradient says whether more of this branch, relative to the identity stream,
  would lower the loss; it reaches only the chosen option's logit directly, the others through the softmax.
- width choices (a block's filters, a layer's expansion) multiply the channels by FBNetV2's mask
  `sum_i h_i * [c < w_i]`, but only over the sampled width's channels: nothing is computed at the maximum
  width. Options narrower than the sample get the gradient of the channels they would keep; wider options get
  the gradient of the computed channels only (the channels they would add are not computed).

The cost term is the exact expectation of the path cost (MACs or table latency) under the independent
categorical distributions: the cost is a sum of the stem, each kept layer and the head, each depending on a
handful of decisions, so `ExpectedCost` tabulates each part over the joint options of its decisions once and
contracts the tables with the probabilities at every step.
"""

from __future__ import annotations

import functools
import itertools
from dataclasses import dataclass, replace
from typing import Any, Callable

import torch
from torch import Tensor

from mpnas.nn.dynamic import Gates
from mpnas.search.controller import Controller
from mpnas.space.geometry import PathGeometry, make_divisible
from mpnas.space.space import STEM_LAYER, SearchSpace

Hard = dict[str, Tensor]  # decision key -> straight-through one-hot vector


def straight_through(logits: Tensor, tau: float, generator: torch.Generator | None = None) -> tuple[int, Tensor]:
    """One Gumbel-max draw from `logits` and its straight-through one-hot vector (see the module docstring)."""
    u = torch.rand(logits.shape, generator=generator).clamp_(1e-10, 1 - 1e-7).to(logits.device)
    noisy = logits - torch.log(-torch.log(u))
    index = int(noisy.argmax())
    soft = torch.softmax(noisy / tau, 0)
    one_hot = torch.zeros_like(soft)
    one_hot[index] = 1.0
    return index, one_hot + (soft - soft.detach())


def sample_relaxed(controller: Controller, tau: float, generator: torch.Generator | None = None) -> tuple[dict[str, Any], Hard]:
    """A path's choices (every decision, as `Controller.sample`) and their straight-through vectors."""
    choices, hard = {}, {}
    for d, logits in zip(controller.decisions, controller.logits):
        i, h = straight_through(logits, tau, generator)
        choices[d.key] = d.options[i]
        hard[d.key] = h
    return choices, hard


def relaxed_for(controller: Controller, choices: dict[str, Any], tau: float) -> Hard:
    """Straight-through vectors of given `choices` (no noise): for timing and probing a fixed path."""
    hard = {}
    for d, logits in zip(controller.decisions, controller.logits):
        soft = torch.softmax(logits / tau, 0)
        one_hot = torch.zeros_like(soft)
        one_hot[d.options.index(choices[d.key])] = 1.0
        hard[d.key] = one_hot + (soft - soft.detach())
    return hard


def _width_mask(h: Tensor, widths: list[int], width: int) -> Tensor:
    """FBNetV2's mask over the first `width` channels: entry c is the sum of h_i over the options wider than c."""
    cover = torch.arange(width)[None, :] < torch.tensor(widths)[:, None]
    return h @ cover.to(h.dtype).to(h.device)


@dataclass(frozen=True)
class _WidthSource:
    """Where a width comes from: a filters decision (its key) or a fixed value (key None)."""

    key: str | None
    options: tuple[Any, ...]  # widths (ints), or a layer's kernels, expansions or SE options


def width_sources(space: SearchSpace) -> list[tuple[_WidthSource, _WidthSource]]:
    """For every block: the source of its input width and of its output width."""
    current = _WidthSource("stem.filters" if len(space.stem_filters) > 1 else None, space.stem_filters)
    out = []
    for b, block in enumerate(space.blocks):
        if block.keeps_width:
            produced = current
        else:
            produced = _WidthSource(f"b{b}.filters" if len(block.filters) > 1 else None, block.filters)
        out.append((current, produced))
        current = produced
    return out


@functools.lru_cache(maxsize=8)
def _decisions_and_sources(space: SearchSpace) -> tuple[dict[str, Any], list[tuple[_WidthSource, _WidthSource]]]:
    """The space's decisions by key and its width sources, computed once per space (`make_gates` runs every step)."""
    return {d.key: d for d in space.decisions()}, width_sources(space)


def make_gates(space: SearchSpace, geo: PathGeometry, choices: dict[str, Any], hard: Hard) -> dict[tuple[int, int], Gates]:
    """The gates of the sampled path `geo` (built from `choices`), from the straight-through vectors `hard`."""
    keyed, sources = _decisions_and_sources(space)

    def chosen(key: str) -> Tensor | None:
        d = keyed.get(key)
        return None if d is None else hard[key][d.options.index(choices[key])]

    def width(source: _WidthSource, n: int) -> Tensor | None:
        return None if source.key is None else _width_mask(hard[source.key], list(source.options), n)

    gates: dict[tuple[int, int], Gates] = {}
    stem_scale = _product([chosen("stem.kernel"), width(sources[0][0], geo.stem.out_ch)])
    if stem_scale is not None:
        gates[STEM_LAYER] = Gates(scale=stem_scale)
    for g in geo.layers:
        prefix = f"b{g.block}.l{g.layer}"
        ops = [chosen(f"{prefix}.kernel"), chosen(f"{prefix}.se"), chosen(f"{prefix}.skip")]
        scale = _product([*ops, width(sources[g.block][1], g.out_ch)])
        expand = None
        if f"{prefix}.expansion" in keyed:
            widths = [make_divisible(g.in_ch * e) for e in keyed[f"{prefix}.expansion"].options]
            expand = _width_mask(hard[f"{prefix}.expansion"], widths, g.exp_ch)
        if scale is not None or expand is not None:
            gates[(g.block, g.layer)] = Gates(scale=scale, expand=expand)
    return gates


def _product(factors: list[Tensor | None]) -> Tensor | None:
    out = None
    for f in factors:
        if f is not None:
            out = f if out is None else out * f
    return out


class ExpectedCost:
    """E[cost(path)] under independent categorical distributions over the decisions, exact and differentiable.

    `cost` is any additive path cost (MACs of one domain's path, or a latency table's sum): it is evaluated on
    partial geometries (the stem and head alone, or with one layer) to get each part's cost, and those are
    tabulated over the joint options of the decisions the part depends on.
    """

    def __init__(self, space: SearchSpace, cost: Callable[[PathGeometry], float]) -> None:
        ref = space.geometry(space.reference_path())  # every layer present, so every (block, layer) has a geometry
        keyed = {d.key: d for d in space.decisions()}
        sources = width_sources(space)
        last = sources[-1][1] if sources else _WidthSource(None, space.stem_filters)
        stem_kernel = _WidthSource("stem.kernel" if "stem.kernel" in keyed else None, space.stem_kernels)

        def base(stem_w: int, kernel: int, head_in: int) -> float:
            geo = PathGeometry(replace(ref.stem, out_ch=stem_w, kernel=kernel), (), replace(ref.head, in_ch=head_in))
            return cost(geo)

        self.parts: list[tuple[str | None, list[str], Tensor]] = []
        self._add(None, [sources[0][0] if sources else _WidthSource(None, space.stem_filters), stem_kernel, last], base)
        empty = PathGeometry(ref.stem, (), ref.head)
        empty_cost = cost(empty)
        for g0 in ref.layers:
            b, l = g0.block, g0.layer
            layer_space = space.blocks[b].layers[l]
            prefix = f"b{b}.l{l}"
            in_src = sources[b][0] if l == 0 else sources[b][1]
            axes = [in_src, sources[b][1],
                    _WidthSource(f"{prefix}.kernel" if f"{prefix}.kernel" in keyed else None, layer_space.kernels),
                    _WidthSource(f"{prefix}.expansion" if f"{prefix}.expansion" in keyed else None, layer_space.expansions),
                    _WidthSource(f"{prefix}.se" if f"{prefix}.se" in keyed else None, layer_space.se)]

            def layer_cost(i: int, o: int, k: int, e: float, se: bool, g0: Any = g0) -> float:
                exp = make_divisible(i * e)
                g = replace(g0, in_ch=i, out_ch=o, exp_ch=exp, kernel=k,
                            se_ch=make_divisible(exp * space.se_ratio) if se else 0)
                return cost(PathGeometry(ref.stem, (g,), ref.head)) - empty_cost

            self._add(f"{prefix}.skip" if layer_space.skippable else None, axes, layer_cost)

    def _add(self, skip_key: str | None, axes: list[_WidthSource], fn: Callable[..., float]) -> None:
        """Tabulate `fn` over the joint options of the distinct decisions among `axes` (fixed axes are constant;
        an axis whose key repeats an earlier one, as a layer's input and output width inside a block, shares it)."""
        keys: list[str] = []
        options: list[tuple[Any, ...]] = []
        for a in axes:
            if a.key is not None and a.key not in keys:
                keys.append(a.key)
                options.append(a.options)
        values = []
        for combo in itertools.product(*options):
            picked = dict(zip(keys, combo))
            values.append(fn(*(picked[a.key] if a.key is not None else a.options[0] for a in axes)))
        table = torch.tensor(values, dtype=torch.float64).reshape([len(o) for o in options] or [])
        self.parts.append((skip_key, keys, table))

    def __call__(self, probs: dict[str, Tensor]) -> Tensor:
        """The expected cost under `probs` (decision key -> probability vector; skip options are (False, True))."""
        total = None
        for skip_key, keys, table in self.parts:
            t = table.to(next(iter(probs.values())).device) if probs else table
            for key in reversed(keys):
                t = (t * probs[key].to(t.dtype)).sum(-1)
            if skip_key is not None:
                t = t * probs[skip_key][0].to(t.dtype)
            total = t if total is None else total + t
        assert total is not None
        return total


def probabilities(controller: Controller) -> dict[str, Tensor]:
    """Each decision's probability vector, differentiable in the logits."""
    return {d.key: torch.softmax(l, 0) for d, l in zip(controller.decisions, controller.logits)}


def mean_max_probability(controller: Controller) -> float:
    """The mean over decisions of the most likely option's probability (1: a fully discrete distribution)."""
    with torch.no_grad():
        if not len(controller.logits):
            return 1.0
        return float(torch.stack([torch.softmax(l, 0).max() for l in controller.logits]).mean())


__all__ = ["ExpectedCost", "relaxed_for", "make_gates", "mean_max_probability", "probabilities", "sample_relaxed",
           "straight_through", "width_sources"]
