"""The gradient strategy (seed 004): straight-through samples, gates, expected cost, entropy, single-shot copy."""

import itertools
import json
import random

import pytest
import torch
import torch.nn.functional as F

from mpnas.cli import main
from mpnas.nn.merged import MultiPathModel
from mpnas.nn.supernet import Supernet
from mpnas.search.controller import Controller
from mpnas.search.gradient import OP_KINDS, ops_held, ops_log_prob
from mpnas.search.relax import ExpectedCost, make_gates, probabilities, sample_relaxed, straight_through
from mpnas.search.rewards import cost_loss
from mpnas.space.arch import Architecture
from mpnas.space.cost import geometry_cost
from mpnas.space.presets import get_space
from spaces import tiny_space

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def space():
    return get_space("default", resolution=16, layers_per_block=2)


def test_straight_through_sample_is_one_hot_and_passes_gradients():
    logits = torch.tensor([0.3, -1.0, 2.0, 0.5], requires_grad=True)
    gen = torch.Generator().manual_seed(0)
    seen = set()
    for _ in range(40):
        i, h = straight_through(logits, tau=1.0, generator=gen)
        assert torch.equal(h.detach(), F.one_hot(torch.tensor(i), 4).float())  # exactly one-hot, not approximately
        seen.add(i)
        (grad,) = torch.autograd.grad(h[i], logits)
        assert grad.abs().sum() > 0 and grad[i] > 0  # the chosen entry's value rises with its own logit
    assert len(seen) > 1  # a draw, not the argmax


def test_gated_forward_equals_the_plain_path_and_only_sampled_candidates_get_weight_gradients(space):
    torch.manual_seed(0)
    net = Supernet(space, {"a": 5}, dropout=0.0)
    ctrl = Controller(space)
    choices, hard = sample_relaxed(ctrl, 2.0, torch.Generator().manual_seed(3))
    path = space.path_from_choices(choices)
    geo = space.geometry(path)
    gates = make_gates(space, geo, choices, hard)
    x = torch.randn(4, 3, 16, 16)
    gated = net.forward_geometry(x, geo, "a", None, gates)
    assert torch.equal(gated, net.forward_geometry(x, geo, "a"))
    gated.logsumexp(1).mean().backward()
    for g in geo.layers:
        layer = net.layers[f"b{g.block}_l{g.layer}"]
        for name, conv in layer.dw.items():
            assert (conv.weight.grad is not None) == (name == f"k{g.kernel}")
        if layer.se is not None:
            assert (layer.se.fc1_weight.grad is not None) == bool(g.se_ch)
    ran = {(g.block, g.layer) for g in geo.layers}
    for key, module in net.layers.items():
        b, l = (int(v[1:]) for v in key.split("_"))
        if (b, l) not in ran:  # a skipped layer computes nothing
            assert all(p.grad is None for p in module.parameters())
    # Every decision of a layer that ran is in the graph (its skip decision through the kept branch's gate); a
    # skipped layer computes nothing, so none of its decisions is. A width decision whose sample is its narrowest
    # option can get an exact zero: no wider channel is computed, so every option's mask gets the same gradient
    # and the softmax's Jacobian cancels it. Every other decision in the graph gets a non-zero gradient.
    for d, logits in zip(ctrl.decisions, ctrl.logits):
        used = d.layer is None or d.layer in ran
        assert (logits.grad is not None) == used, d.key
        if used and not logits.grad.abs().sum() > 0:
            narrowest = hard[d.key].argmax().item() == 0
            assert d.key.endswith((".filters", ".expansion")) and narrowest, f"{d.key}: no gradient"


def test_held_op_choices_take_no_gate_gradient_while_widths_do(space):
    """`search.gradient_ops=reinforce`: the op choices' gates are exactly the plain path's (1) and give their
    logits no gradient; the widths' straight-through gradient is untouched."""
    torch.manual_seed(0)
    net = Supernet(space, {"a": 5}, dropout=0.0)
    ctrl = Controller(space)
    choices, hard = sample_relaxed(ctrl, 2.0, torch.Generator().manual_seed(3))
    geo = space.geometry(space.path_from_choices(choices))
    gates = make_gates(space, geo, choices, ops_held(ctrl, hard))
    x = torch.randn(4, 3, 16, 16)
    gated = net.forward_geometry(x, geo, "a", None, gates)
    assert torch.equal(gated, net.forward_geometry(x, geo, "a"))
    gated.logsumexp(1).mean().backward()
    widths = 0
    for d, logits in zip(ctrl.decisions, ctrl.logits):
        if d.kind in OP_KINDS:
            assert logits.grad is None or not logits.grad.any(), d.key
        elif logits.grad is not None and logits.grad.abs().sum() > 0:
            widths += 1
    assert widths


def test_the_op_choices_reinforce_term_is_the_exact_gradient_of_the_expected_loss():
    """Over every path of a small space, E[f * grad log p(ops)] equals grad E[f] for the op choices' logits, and is
    zero for the widths': the REINFORCE term estimates the op choices' share of the gradient without bias, for a
    loss f of the path (here its MACs, which depend on ops and widths), and leaves widths to the gates."""
    space = tiny_space()
    ctrl = Controller(space)
    with torch.no_grad():
        for l in ctrl.logits:
            l.normal_(0, 0.7)
    decisions = ctrl.decisions
    exact, surrogate = torch.zeros(()), torch.zeros(())
    for combo in itertools.product(*(d.options for d in decisions)):
        choices = dict(zip((d.key for d in decisions), combo))
        logp = sum(torch.log_softmax(l, 0)[d.options.index(choices[d.key])] for d, l in zip(decisions, ctrl.logits))
        f = geometry_cost(space.geometry(space.path_from_choices(choices)), 4).macs / 1e4
        exact = exact + logp.exp() * f
        surrogate = surrogate + logp.exp().detach() * f * ops_log_prob(ctrl, choices)
    g_exact = torch.autograd.grad(exact, list(ctrl.logits), allow_unused=True)
    g_sur = torch.autograd.grad(surrogate, list(ctrl.logits), allow_unused=True)
    ops = 0
    for d, ge, gs in zip(decisions, g_exact, g_sur):
        gs = torch.zeros(len(d.options)) if gs is None else gs
        if d.kind in OP_KINDS:
            torch.testing.assert_close(gs, ge, rtol=1e-4, atol=1e-6)
            ops += int(ge.abs().sum() > 1e-6)
        else:
            assert not gs.any(), d.key
    assert ops >= 3  # kernels, SE and the skip all move the cost


def test_a_warm_start_from_rl_takes_reinforce_steps_then_gradient_steps(tiny_cfg, tmp_path):
    """`search.gradient_rl_fraction`: the first learning steps score every path and move the logits by REINFORCE
    against a reward baseline; after them, the architecture step's own fields appear and the baseline is the op
    choices' cross-entropy one (`gradient_ops=reinforce`)."""
    out = tmp_path / "search"
    args = ["search", "--data", tiny_cfg.data.spec, "--resolution", "16", "--budget", "quick", "--quiet", "--out", str(out),
            "--cache-dir", tiny_cfg.data.cache_dir, "--threads", "1"]
    for s in ["search.strategy=gradient", "search.gradient_rl_fraction=0.5", "search.gradient_ops=reinforce",
              "search.steps=18", "search.rl_start=0.125", "search.log_every=1", "space.layers_per_block=2",
              "search.batch_size=8", "search.val_batch_size=8"]:
        args += ["--set", s]
    assert main(args) == 0
    rows = [json.loads(l) for l in (out / "metrics.jsonl").read_text().splitlines()]
    rows = [r for r in rows if r["stage"] == "search" and r["rl_active"] and r["domain"] == "colours"]
    first = rows[0]["step"]  # 18 steps, rl_start 1/8: learning from step 2; half of the 16 learning steps are RL's
    assert first == 2
    rl, grad = [r for r in rows if r["step"] < first + 8], [r for r in rows if r["step"] >= first + 8]
    assert len(rl) == 8 and len(grad) == 8
    assert not any("tau" in r for r in rl) and all("tau" in r for r in grad)
    assert all(r["baseline"] is not None for r in rl[1:])  # a reward's moving average, in (0, 1]
    assert all(0 < r["baseline"] <= 1 for r in rl[1:])
    assert grad[0]["baseline"] is None  # reset at the switch: the op choices' baseline is a cross-entropy
    assert all(r["baseline"] is not None and r["baseline"] > 0 for r in grad[1:])


def test_entropy_regulariser_lowers_entropy():
    torch.manual_seed(0)
    ctrl = Controller(get_space("default", resolution=16, layers_per_block=2))
    with torch.no_grad():
        for l in ctrl.logits:
            l.normal_(0, 0.1)
    opt = torch.optim.Adam(ctrl.parameters(), lr=0.05)
    before = ctrl.entropy().item()
    for _ in range(100):
        opt.zero_grad()
        ctrl.entropy_tensor().backward()
        opt.step()
    assert ctrl.entropy().item() < 0.3 * before
    # Decisions outside skippable layers are driven to near-discrete values (gated ones count as much as their
    # layer is kept, so a layer that is nearly always skipped keeps its inner entropy).
    assert min(torch.softmax(l, 0).max().item() for d, l in zip(ctrl.decisions, ctrl.logits) if d.gated_by is None) > 0.8


def all_paths_expected_cost(space, probs, cost):
    """E[cost] by enumerating every assignment of the decisions."""
    decisions = space.decisions()
    total = 0.0
    for combo in itertools.product(*(range(len(d.options)) for d in decisions)):
        p = 1.0
        for d, i in zip(decisions, combo):
            p *= float(probs[d.key][i])
        choices = {d.key: d.options[i] for d, i in zip(decisions, combo)}
        total += p * cost(space.geometry(space.path_from_choices(choices)))
    return total


def test_expected_cost_is_exact():
    space = tiny_space()
    cost = lambda geo: geometry_cost(geo, 10).macs  # noqa: E731
    expected = ExpectedCost(space, cost)
    torch.manual_seed(1)
    ctrl = Controller(space)
    with torch.no_grad():
        for l in ctrl.logits:
            l.normal_()
    probs = {k: v.detach() for k, v in probabilities(ctrl).items()}
    # float32 probabilities sum to 1 only within ~1e-7, and the enumeration multiplies by every decision's sum
    assert float(expected(probs)) == pytest.approx(all_paths_expected_cost(space, probs, cost), rel=1e-6)
    # A one-hot distribution costs exactly its path.
    rng = random.Random(0)
    for _ in range(5):
        path = space.random_path(rng)
        choices = space.choices_of(path)
        one_hot = {d.key: F.one_hot(torch.tensor(d.options.index(choices.get(d.key, d.options[0]))), len(d.options)).double()
                   for d in space.decisions()}
        assert float(expected(one_hot)) == cost(space.geometry(path))


def test_cost_term_gradient_has_the_right_sign(space):
    expected = ExpectedCost(space, lambda geo: geometry_cost(geo, 10).macs)
    ctrl = Controller(space)
    target = float(expected(probabilities(ctrl)).detach())
    loss = cost_loss("mnas", expected(probabilities(ctrl)) / target, beta=-0.07)
    loss.backward()
    grads = {d.key: l.grad for d, l in zip(ctrl.decisions, ctrl.logits)}
    # Wider options and keeping a layer cost more, so the loss pushes their logits down.
    assert grads["b1.filters"][-1] > 0 > grads["b1.filters"][0]
    assert grads["b1.l0.expansion"][-1] > 0 > grads["b1.l0.expansion"][0]
    assert grads["b1.l1.skip"][0] > 0 > grads["b1.l1.skip"][1]  # options (False, True): keeping costs
    assert grads["b1.l0.kernel"][-1] > 0 > grads["b1.l0.kernel"][0]
    # A positive beta rewards cost instead, and the signs flip.
    ctrl.zero_grad()
    cost_loss("mnas", expected(probabilities(ctrl)) / target, beta=0.07).backward()
    assert ctrl.logits[ctrl.decisions.index(next(d for d in ctrl.decisions if d.key == "b1.filters"))].grad[-1] < 0


def test_merged_model_copies_the_supernets_weights_exactly(space):
    torch.manual_seed(0)
    net = Supernet(space, {"a": 5, "b": 3}, dropout=0.0)
    opt = torch.optim.SGD(net.parameters(), lr=0.05)
    rng = random.Random(0)
    for step in range(4):  # weights and running statistics away from their initial values
        loss = net(torch.randn(6, 3, 16, 16), space.random_path(rng), "ab"[step % 2]).logsumexp(1).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    net.eval()
    paths = {"a": space.random_path(rng), "b": space.random_path(rng)}
    arch = Architecture(space, paths, {"a": 5, "b": 3})
    model = MultiPathModel(arch, dropout=0.0).eval()
    model.copy_from_supernet(net)
    x = torch.randn(5, 3, 16, 16)
    for d, path in paths.items():
        assert torch.equal(model(x, d), net(x, path, d))
    key = next(k for k in model.state_dict() if k.startswith("nodes.") and k.endswith("project.weight"))
    tensor = model.state_dict()[key]
    node = key.split(".")[1]
    g = next(g for geo in model.geometries.values() for g in geo.layers if g.node.replace(".", "_") == node)
    src = net.state_dict()[f"layers.b{g.block}_l{g.layer}.project.weight"]
    assert torch.equal(tensor, src[: tensor.shape[0], : tensor.shape[1]])


def test_single_shot_run_starts_from_the_supernet(tiny_cfg, tmp_path):
    """`mpnas run` with the gradient strategy and `train.from_supernet`: near-discrete logits are recorded, the
    step -1 validation is the copied (recalibrated) supernet, and with 0 fine-tuning steps the saved weights are it."""
    out = tmp_path / "run"
    sets = ["search.strategy=gradient", "train.from_supernet=true", "train.finetune_steps=0", "train.recalibrate_batches=2",
            "search.steps=8"]
    args = ["run", "--data", tiny_cfg.data.spec, "--resolution", "16", "--budget", "quick", "--quiet", "--out", str(out),
            "--cache-dir", tiny_cfg.data.cache_dir, "--threads", "1"]
    for s in [*sets, "space.layers_per_block=2", "search.batch_size=8", "search.val_batch_size=8", "train.batch_size=8"]:
        args += ["--set", s]
    assert main(args) == 0
    arch = json.loads((out / "architecture.json").read_text())
    assert arch["meta"]["strategy"] == "gradient"
    assert set(arch["meta"]["mean_max_prob"]) == {"colours", "bars"}
    rows = [json.loads(l) for l in (out / "metrics.jsonl").read_text().splitlines()]
    search = [r for r in rows if r["stage"] == "search" and r["rl_active"]]
    assert search and all({"tau", "entropy_weight", "arch_loss"} <= set(r) for r in search)
    evals = [r for r in rows if r["stage"] == "train_eval"]
    assert {r["step"] for r in evals} == {-1}  # 0 fine-tuning steps: only the copied model was validated
    assert not [r for r in rows if r["stage"] == "train"]
    results = json.loads((out / "results.json").read_text())
    assert set(results["wall_time_s"]) >= {"search", "train"}
