"""Plain modules of a single path: the standalone network that search extracts, training can fine-tune and
export sends to a phone. Nothing here knows about search spaces or other domains.

Shapes come from `mpnas.space.space` geometry objects, so a plain block is exactly the block that the
geometry (and hence the cost model) describes.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from mpnas.nn.ops import depthwise_conv2d
from mpnas.space.geometry import ConvGeometry, HeadGeometry, LayerGeometry, PathGeometry

BN_EPS = 1e-3


def make_act(name: str) -> nn.Module:
    if name == "relu":
        return nn.ReLU(inplace=True)
    if name == "hswish":
        return nn.Hardswish(inplace=True)
    if name == "swish":
        return nn.SiLU(inplace=True)
    raise ValueError(f"unknown activation {name!r}")


class DepthwiseConv2d(nn.Conv2d):
    """nn.Conv2d (same weights, same state dict, exports as a plain Conv) with the fast CPU weight gradient."""

    def __init__(self, channels: int, kernel: int, stride: int = 1) -> None:
        super().__init__(channels, channels, kernel, stride, kernel // 2, groups=channels, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        return depthwise_conv2d(x, self.weight, self.stride[0])


class ConvBNAct(nn.Sequential):
    def __init__(
        self, in_ch: int, out_ch: int, kernel: int, stride: int = 1, groups: int = 1, act: str | None = None,
        bn_momentum: float = 0.1,
    ) -> None:
        depthwise = groups > 1 and groups == in_ch == out_ch
        conv = (
            DepthwiseConv2d(in_ch, kernel, stride)
            if depthwise
            else nn.Conv2d(in_ch, out_ch, kernel, stride, kernel // 2, groups=groups, bias=False)
        )
        layers: list[nn.Module] = [
            conv,
            nn.BatchNorm2d(out_ch, eps=BN_EPS, momentum=bn_momentum),
        ]
        if act is not None:
            layers.append(make_act(act))
        super().__init__(*layers)


class SqueezeExcite(nn.Module):
    """MobileNetV3's squeeze-and-excite: pool, 1x1 reduce, ReLU, 1x1 expand, hard-sigmoid gate."""

    def __init__(self, channels: int, squeeze: int) -> None:
        super().__init__()
        self.fc1 = nn.Conv2d(channels, squeeze, 1)
        self.fc2 = nn.Conv2d(squeeze, channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        s = x.mean((2, 3), keepdim=True)
        s = self.fc2(torch.relu(self.fc1(s)))
        return x * nn.functional.hardsigmoid(s)


class InvertedResidual(nn.Module):
    """Inverted bottleneck: [1x1 expand] -> kxk depthwise -> [SE] -> 1x1 project, residual when shapes allow."""

    def __init__(self, g: LayerGeometry, bn_momentum: float = 0.1) -> None:
        super().__init__()
        self.residual = g.residual
        self.expand = ConvBNAct(g.in_ch, g.exp_ch, 1, act=g.act, bn_momentum=bn_momentum) if g.has_expand else None
        self.dw = ConvBNAct(g.exp_ch, g.exp_ch, g.kernel, g.stride, groups=g.exp_ch, act=g.act, bn_momentum=bn_momentum)
        self.se = SqueezeExcite(g.exp_ch, g.se_ch) if g.se_ch else None
        self.project = ConvBNAct(g.exp_ch, g.out_ch, 1, act=None, bn_momentum=bn_momentum)

    def forward(self, x: Tensor) -> Tensor:
        y = x if self.expand is None else self.expand(x)
        y = self.dw(y)
        if self.se is not None:
            y = self.se(y)
        y = self.project(y)
        return x + y if self.residual else y


class Head(nn.Module):
    """1x1 conv + BN + act, global average pool, optional hidden fully connected layer + act + dropout."""

    def __init__(self, g: HeadGeometry, dropout: float = 0.2, bn_momentum: float = 0.1) -> None:
        super().__init__()
        self.conv = ConvBNAct(g.in_ch, g.conv_ch, 1, act=g.act, bn_momentum=bn_momentum)
        self.hidden = nn.Linear(g.conv_ch, g.hidden) if g.hidden else None
        self.act = make_act(g.act)
        self.dropout = nn.Dropout(dropout)
        self.out_features = g.hidden or g.conv_ch

    def forward(self, x: Tensor) -> Tensor:
        x = self.conv(x).mean((2, 3))
        if self.hidden is not None:
            x = self.act(self.hidden(x))
        return self.dropout(x)


class PathNet(nn.Module):
    """One domain's network: stem, the path's non-skipped layers, head and classifier."""

    def __init__(self, geometry: PathGeometry, stem: nn.Module, layers: nn.Sequential, head: Head, classifier: nn.Linear) -> None:
        super().__init__()
        self.geometry = geometry
        self.stem, self.layers, self.head, self.classifier = stem, layers, head, classifier

    @classmethod
    def build(cls, geometry: PathGeometry, num_classes: int, dropout: float = 0.2, bn_momentum: float = 0.1) -> PathNet:
        """Fresh weights (the published MobileNetV3 models are built this way)."""
        s: ConvGeometry = geometry.stem
        head = Head(geometry.head, dropout, bn_momentum)
        return cls(
            geometry,
            ConvBNAct(s.in_ch, s.out_ch, s.kernel, s.stride, act=s.act, bn_momentum=bn_momentum),
            nn.Sequential(*(InvertedResidual(g, bn_momentum) for g in geometry.layers)),
            head,
            nn.Linear(head.out_features, num_classes),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.head(self.layers(self.stem(x))))
