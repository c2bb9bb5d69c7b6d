import pytest
import torch
import torch.nn.functional as F

from mpnas.nn.blocks import DepthwiseConv2d
from mpnas.nn.ops import depthwise_conv2d


@pytest.mark.parametrize("shape, k, stride", [((3, 6, 7, 7), 3, 1), ((2, 4, 9, 9), 5, 2), ((2, 5, 2, 2), 7, 1), ((4, 3, 5, 5), 7, 2)])
def test_depthwise_gradients_equal_pytorchs(shape, k, stride):
    torch.manual_seed(0)
    x = torch.randn(shape, dtype=torch.float64, requires_grad=True)
    w = torch.randn(shape[1], 1, k, k, dtype=torch.float64, requires_grad=True)
    ref = F.conv2d(x, w, None, stride, k // 2, 1, shape[1])
    out = depthwise_conv2d(x, w, stride)
    g = torch.randn_like(ref)
    assert torch.equal(out, ref)
    for a, b in zip(torch.autograd.grad(ref, (x, w), g), torch.autograd.grad(out, (x, w), g)):
        assert torch.allclose(a, b, atol=1e-12)
    assert torch.autograd.gradcheck(lambda a, b: depthwise_conv2d(a, b, stride), (x, w))


def test_depthwise_module_is_a_plain_conv():
    m = DepthwiseConv2d(8, 5, 2)
    assert isinstance(m, torch.nn.Conv2d) and set(m.state_dict()) == {"weight"}
    x = torch.randn(2, 8, 6, 6)
    with torch.no_grad():
        assert torch.equal(m(x), F.conv2d(x, m.weight, None, 2, 2, 1, 8))
