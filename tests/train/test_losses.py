import pytest
import torch

from mpnas.config import LossConfig
from mpnas.errors import MpnasError
from mpnas.train.losses import KINDS, LossCombiner

DOMAINS = ["a", "b", "c"]


def autograd_weights(comb, losses, progress):
    L = losses.clone().requires_grad_(True)
    comb(L, progress).backward()
    return L.grad


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("progress", [0.0, 0.3, 1.0])
def test_gradient_weight_is_h_prime(kind, progress):
    comb = LossCombiner(LossConfig(kind=kind, w=1.5, weights={"b": 2.0}), DOMAINS)
    if comb.log_vars is not None:
        with torch.no_grad():
            comb.log_vars.copy_(torch.tensor([0.2, -0.5, 1.0]))
    losses = torch.tensor([0.3, 1.7, 4.2])
    assert torch.allclose(autograd_weights(comb, losses, progress), comb.weights(losses, progress), rtol=1e-5)


def test_h_prime_values():
    L = torch.tensor([1.0, 2.0, 3.0])
    assert torch.allclose(LossCombiner(LossConfig(kind="x"), DOMAINS).weights(L, 0.5), torch.ones(3))
    assert torch.allclose(LossCombiner(LossConfig(kind="x2"), DOMAINS).weights(L, 0.5), 2 * L)
    exp = LossCombiner(LossConfig(kind="exp", w=2.0), DOMAINS)
    assert torch.allclose(exp.weights(L, 0.9), torch.exp(L / 2) / 2)
    emp = LossCombiner(LossConfig(kind="empirical", weights={"a": 2.0}), DOMAINS)
    assert emp.weights(L, 0.0).tolist() == [2.0, 1.0, 1.0]
    # boosting favours the harder domain
    assert exp.weights(L, 0.0)[2] > exp.weights(L, 0.0)[0]


def test_w_schedules():
    dec = LossCombiner(LossConfig(kind="exp_dec", w_max=2.0, w_min=1.0), DOMAINS)
    inc = LossCombiner(LossConfig(kind="exp_inc", w_max=2.0, w_min=1.0), DOMAINS)
    assert [dec.w(p) for p in (0.0, 0.5, 1.0)] == [2.0, 1.5, 1.0]
    assert [inc.w(p) for p in (0.0, 0.5, 1.0)] == [1.0, 1.5, 2.0]
    assert dec.w(2.0) == 1.0  # clamped past the end
    # decreasing w: the ratio of a hard domain's weight to an easy one's grows over training
    L = torch.tensor([0.5, 3.0])
    two = LossCombiner(LossConfig(kind="exp_dec"), ["a", "b"])
    r0, r1 = (lambda w: (w[1] / w[0]).item())(two.weights(L, 0.0)), (lambda w: (w[1] / w[0]).item())(two.weights(L, 1.0))
    assert r1 > r0


def test_normalized_weights_have_mean_one_and_keep_ratios():
    comb = LossCombiner(LossConfig(kind="exp", w=1.0, normalize=True), DOMAINS)
    L = torch.tensor([0.5, 1.0, 2.0])
    g = autograd_weights(comb, L, 0.0)
    assert g.mean().item() == pytest.approx(1.0)
    raw = comb.weights(L, 0.0)
    assert torch.allclose(g / g[0], raw / raw[0])


def test_uwl_learns_its_log_variances():
    comb = LossCombiner(LossConfig(kind="uwl"), DOMAINS)
    opt = torch.optim.SGD(comb.parameters(), lr=0.5)
    L = torch.tensor([0.1, 1.0, 3.0])
    for _ in range(200):
        opt.zero_grad()
        comb(L, 0.0).backward()
        opt.step()
    # the optimum of exp(-s) L + s/2 is s = log(2L): noisier (larger-loss) domains get smaller weights
    assert torch.allclose(comb.log_vars.detach(), torch.log(2 * L), atol=1e-3)


def test_half_precision_losses_are_combined_in_float32():
    comb = LossCombiner(LossConfig(kind="exp", w=0.1), DOMAINS)
    L = torch.tensor([1.0, 1.2, 1.5], dtype=torch.float16)  # exp(15) overflows float16
    out = comb(L, 0.0)
    assert out.dtype == torch.float32 and torch.isfinite(out)


def test_bad_loss_config():
    with pytest.raises(MpnasError, match="loss.kind"):
        LossCombiner(LossConfig(kind="softmax"), DOMAINS)
    with pytest.raises(MpnasError, match="unknown domain"):
        LossCombiner(LossConfig(kind="empirical", weights={"zzz": 2.0}), DOMAINS)
    with pytest.raises(MpnasError, match="positive"):
        LossCombiner(LossConfig(kind="exp", w=0.0), DOMAINS)
