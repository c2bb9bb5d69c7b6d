import math
import random

import pytest
import torch

from mpnas.errors import MpnasError
from mpnas.search.controller import Controller, reinforce_step
from mpnas.search.rewards import reward
from mpnas.space.presets import get_space
from mpnas.space.space import BlockSpace, LayerSpace, SearchSpace


def bandit_space():
    return SearchSpace(
        name="bandit",
        resolution=16,
        stem_filters=(8,),
        blocks=(BlockSpace((8, 16, 24), (LayerSpace(1, "relu", (3, 5, 7), (1.0, 2.0), (False, True), False),
                                           LayerSpace(1, "relu", (3, 5), (2.0,), (False,), True))),),
        head_filters=8,
        head_hidden=0,
    )


def test_initial_distribution_is_uniform():
    c = Controller(get_space("default"))
    for probs in c.probabilities().values():
        assert probs == pytest.approx([1 / len(probs)] * len(probs))


def test_controller_converges_on_a_bandit():
    """Reward 1 for kernel 5 at layer 0 and for 16 filters, 0 otherwise, plus noise: both choices must reach >= 0.9."""
    torch.manual_seed(0)
    c = Controller(bandit_space())
    opt = torch.optim.Adam(c.parameters(), lr=0.05, betas=(0.0, 0.999))
    gen = torch.Generator().manual_seed(0)
    noise = random.Random(0)
    baseline = None
    for _ in range(400):
        ch = c.sample(gen)
        r = 0.5 * (ch["b0.l0.kernel"] == 5) + 0.5 * (ch["b0.filters"] == 16) + noise.gauss(0, 0.1)
        baseline = reinforce_step(c, opt, ch, r, baseline, momentum=0.95)
    probs = c.probabilities()
    assert probs["b0.l0.kernel"][1] >= 0.9
    assert probs["b0.filters"][1] >= 0.9
    assert c.most_likely()["b0.l0.kernel"] == 5


def test_no_learning_before_rl_starts_but_baseline_tracks():
    c = Controller(bandit_space())
    opt = torch.optim.Adam(c.parameters(), lr=0.1)
    before = [p.clone() for p in c.parameters()]
    b = None
    for r in (1.0, 0.0, 1.0):
        b = reinforce_step(c, opt, c.sample(), r, b, momentum=0.5, learn=False)
    assert all(torch.equal(x, y) for x, y in zip(before, c.parameters()))
    assert b == pytest.approx(0.5 * (0.5 * 1.0 + 0.5 * 0.0) + 0.5 * 1.0)


def test_hierarchical_log_prob_ignores_choices_inside_a_skipped_layer():
    c = Controller(bandit_space())
    with torch.no_grad():
        c.logits[c._index["b0.l1.kernel"]].copy_(torch.tensor([2.0, -1.0]))
    ch = c.most_likely()
    ch["b0.l1.skip"] = True
    a = c.log_prob({**ch, "b0.l1.kernel": 3})
    b = c.log_prob({**ch, "b0.l1.kernel": 5})
    assert torch.equal(a, b)
    ch["b0.l1.skip"] = False
    assert not torch.equal(c.log_prob({**ch, "b0.l1.kernel": 3}), c.log_prob({**ch, "b0.l1.kernel": 5}))
    # the uniform controller's log-probability of a sample is the sum over the decisions that matter
    u = Controller(bandit_space())
    kept = {**u.most_likely(), "b0.l1.skip": False}
    expected = -(math.log(3) + math.log(3) + math.log(2) + math.log(2) + math.log(2) + math.log(2))
    assert u.log_prob(kept).item() == pytest.approx(expected)


def test_rewards_match_their_formulas():
    assert reward("mnas", 0.8, 2.0, 1.0, -0.07) == pytest.approx(0.8 * 2.0**-0.07)
    assert reward("mnas_hard", 0.8, 0.5, 1.0, -0.07) == pytest.approx(0.8)  # cheaper than target: no bonus
    assert reward("mnas_hard", 0.8, 2.0, 1.0, -0.07) == pytest.approx(0.8 * 2.0**-0.07)
    assert reward("abs", 0.8, 1.5, 1.0, -0.1) == pytest.approx(0.8 - 0.05)
    assert reward("abs", 0.8, 0.5, 1.0, -0.1) == pytest.approx(0.8 - 0.05)
    assert reward("mnas", 0.5, 30.0, 60.0, -0.07) > reward("mnas", 0.5, 60.0, 60.0, -0.07)
    with pytest.raises(MpnasError, match="not one of"):
        reward("latency", 0.5, 1.0, 1.0, -0.07)


def test_leave_one_out_step_uses_every_sample_against_the_others():
    from mpnas.search.controller import reinforce_loo_step

    c = Controller(bandit_space())
    gen = torch.Generator().manual_seed(1)
    samples = [(c.sample(gen), r) for r in (1.0, 0.0, 0.5)]
    # expected gradient of the loss -(1/K) sum_k (r_k - mean of the others) log p(a_k), built by hand
    ref = Controller(bandit_space())
    adv = [1.0 - 0.25, 0.0 - 0.75, 0.5 - 0.5]
    loss = -sum(a * ref.log_prob(ch) for a, (ch, _) in zip(adv, samples)) / 3
    loss.backward()
    calls = []
    original = c.log_prob
    c.log_prob = lambda ch: calls.append(ch) or original(ch)  # count the log-probabilities in the update
    opt = torch.optim.SGD(c.parameters(), lr=1.0)
    before = [p.detach().clone() for p in c.parameters()]
    got = reinforce_loo_step(c, opt, samples)
    assert got.tolist() == pytest.approx(adv)
    assert len(calls) == 3
    for p0, p1, r in zip(before, c.parameters(), ref.parameters()):
        g = r.grad if r.grad is not None else torch.zeros_like(p0)
        assert torch.allclose(p0 - p1, g, atol=1e-6)  # SGD with lr 1: the step is the gradient
    with pytest.raises(ValueError):
        reinforce_loo_step(c, opt, samples[:1])


def test_leave_one_out_controller_converges_on_a_bandit():
    from mpnas.search.controller import reinforce_loo_step

    torch.manual_seed(0)
    c = Controller(bandit_space())
    opt = torch.optim.Adam(c.parameters(), lr=0.05, betas=(0.0, 0.999))
    gen = torch.Generator().manual_seed(0)
    noise = random.Random(0)
    for _ in range(150):
        shared = noise.gauss(0, 0.5)  # a batch effect common to the K paths scored together: it must cancel
        samples = []
        for _ in range(4):
            ch = c.sample(gen)
            samples.append((ch, 0.5 * (ch["b0.l0.kernel"] == 5) + 0.5 * (ch["b0.filters"] == 16) + shared))
        reinforce_loo_step(c, opt, samples)
    probs = c.probabilities()
    assert probs["b0.l0.kernel"][1] >= 0.9 and probs["b0.filters"][1] >= 0.9
