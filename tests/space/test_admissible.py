"""The add-domain constraint (`Admissible`) is exact: on a space small enough to enumerate, its least completion
equals what a whole path adds, a masked controller gives every admitted path its probability and every other path
none, and its draws and most likely path are admitted."""

from __future__ import annotations

import itertools
import math
import random

import pytest
import torch

from mpnas.search.controller import Controller
from mpnas.space.arch import Architecture
from mpnas.space.extension import Admissible, Frozen
from mpnas.space.space import Path, SearchSpace
from spaces import tiny_space

CLASSES = 5


def every_path(space: SearchSpace) -> list[Path]:
    decisions = space.decisions()
    out: list[Path] = []
    for values in itertools.product(*(d.options for d in decisions)):
        p = space.path_from_choices(dict(zip([d.key for d in decisions], values)))
        if p not in out:
            out.append(p)
    return out


@pytest.fixture(scope="module")
def setting() -> tuple[SearchSpace, Frozen, list[Path]]:
    """A 'trained' model of two domains on mid-sized paths, so that some paths fit and many do not."""
    space = tiny_space()
    rng = random.Random(3)
    paths = every_path(space)
    base = Architecture(space, {"a": rng.choice(paths), "b": rng.choice(paths)}, {"a": 4, "b": 7})
    return space, Frozen.of(base), paths


def _full(space: SearchSpace, path: Path) -> dict:
    choices = space.choices_of(path)
    return {d.key: choices.get(d.key, d.options[0]) for d in space.decisions()}


def test_least_completion_of_a_whole_path_is_what_it_adds_or_inf_when_it_does_not_fit(setting):
    space, frozen, paths = setting
    adm = Admissible(frozen, CLASSES, budget=math.inf)
    fitting = 0
    for p in paths:
        geo = space.geometry(p)
        want = frozen.added_params(geo, CLASSES) if frozen.fits(geo) else math.inf
        assert adm.least_added(_full(space, p)) == want
        fitting += frozen.fits(geo)
    assert 0 < fitting < len(paths)  # the constraint bites
    # with nothing fixed, the least is the least over every fitting path
    assert adm.least_added({}) == min(frozen.added_params(space.geometry(p), CLASSES) for p in paths
                                      if frozen.fits(space.geometry(p)))


def _admitted(space, frozen, paths, budget):
    ok = [p for p in paths if frozen.fits(space.geometry(p))
          and frozen.added_params(space.geometry(p), CLASSES) <= budget]
    if ok:
        return ok
    floor = min(frozen.added_params(space.geometry(p), CLASSES) for p in paths if frozen.fits(space.geometry(p)))
    return [p for p in paths if frozen.fits(space.geometry(p)) and frozen.added_params(space.geometry(p), CLASSES) == floor]


@pytest.mark.parametrize("share", [0.0, 0.3, 0.7, 1.0])
def test_a_masked_controller_puts_all_its_probability_on_admitted_paths(setting, share):
    """share: where the budget sits between the least and the most a fitting path adds (0: below every path, so
    only the least-adding paths may be drawn)."""
    space, frozen, paths = setting
    adds = sorted(frozen.added_params(space.geometry(p), CLASSES) for p in paths if frozen.fits(space.geometry(p)))
    budget = adds[0] - 1 if share == 0 else adds[0] + share * (adds[-1] - adds[0])
    ctrl = Controller(space, Admissible(frozen, CLASSES, budget))
    torch.manual_seed(0)
    with torch.no_grad():
        for logits in ctrl.logits:
            logits.normal_(0, 1.5)
    admitted = _admitted(space, frozen, paths, budget)
    with torch.no_grad():
        probs = {p: float(ctrl.log_prob(space.choices_of(p)).exp()) for p in paths}
    assert sum(probs[p] for p in admitted) == pytest.approx(1.0, abs=1e-5)
    assert all(probs[p] > 0 for p in admitted)
    assert all(probs[p] == 0 for p in paths if p not in admitted)
    gen = torch.Generator().manual_seed(1)
    drawn = [ctrl.sample(gen) for _ in range(60)]
    assert all(set(c) == {d.key for d in space.decisions()} for c in drawn)  # whole: the warm-up may un-skip a layer
    assert all(space.path_from_choices(c) in admitted for c in drawn)
    assert ctrl.most_likely_path() in admitted


def test_the_mask_passes_reinforce_gradients_only_to_allowed_options(setting):
    """The log-probability is the masked softmax's: a forbidden option's logit gets no gradient, and the allowed
    options' gradients sum to zero per decision (a softmax over them)."""
    space, frozen, paths = setting
    adm = Admissible(frozen, CLASSES, math.inf)
    ctrl = Controller(space, adm)
    choices = ctrl.sample(torch.Generator().manual_seed(2))
    ctrl.log_prob(choices).backward()
    active = set(ctrl._active(choices))
    for i, logits in enumerate(ctrl.logits):
        ok = torch.tensor(adm.allowed(i, choices))
        grad = logits.grad if logits.grad is not None else torch.zeros_like(logits)
        if i not in active:
            assert torch.all(grad == 0)
            continue
        assert torch.all(grad[~ok] == 0)
        assert float(grad[ok].sum()) == pytest.approx(0.0, abs=1e-6)


def test_an_unconstrained_controller_draws_as_before():
    """No constraint: the same draws from the same generator as a plain softmax per decision (the default runs
    reproduce their figures)."""
    space = tiny_space()
    ctrl = Controller(space)
    torch.manual_seed(0)
    with torch.no_grad():
        for logits in ctrl.logits:
            logits.normal_()
    a, b = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    for _ in range(10):
        want = {d.key: d.options[int(torch.multinomial(torch.softmax(l, 0), 1, generator=b))]
                for d, l in zip(ctrl.decisions, ctrl.logits)}
        assert ctrl.sample(a) == want
