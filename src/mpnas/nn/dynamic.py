"""Dynamic-width modules shared by the supernet and the merged multi-path model.

Each holds its weights at the largest width any user needs and runs a narrower user by slicing
`weight[:out, :in]` (Once-for-All style): nothing is computed at full width and then masked, so a narrow path
costs what the same plain network costs. `extract` copies the slices into the plain modules of
`mpnas.nn.blocks`, which is how a standalone path leaves the supernet or the merged model.

Batch norm is kept per *key*: the supernet uses one key ("shared"), so a narrower path reads a prefix of the
max-width running statistics (sliced statistics). The merged model keys batch norm by domain: domains that
share a node's convolutions keep their own normalisation statistics and affine parameters, because the
statistics of digits and of textures differ too much to share (as in Bilen and Vedaldi's universal networks).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mpnas.nn.blocks import BN_EPS, ConvBNAct, Head, InvertedResidual, make_act
from mpnas.nn.ops import depthwise_conv2d
from mpnas.space.geometry import ConvGeometry, HeadGeometry, LayerGeometry

SHARED = "shared"


def domain_key(domain: str) -> str:
    """Module-dict key for a domain; the prefix keeps names such as 'train' clear of nn.Module attributes."""
    return f"d_{domain}"


def act_fn(name: str, x: Tensor) -> Tensor:
    """In place, as the plain modules' activations are: `x` is always a fresh batch-norm or linear output that
    nothing else reads, and an out-of-place activation would allocate (and later free) one more feature map."""
    if name == "relu":
        return F.relu(x, inplace=True)
    if name == "hswish":
        return F.hardswish(x, inplace=True)
    if name == "swish":
        return F.silu(x, inplace=True)
    raise ValueError(f"unknown activation {name!r}")


def prefix(t: Tensor, n: int, m: int | None = None) -> Tensor:
    """`t[:n]` (or `t[:n, :m]`), or `t` itself when that slice is all of it.

    Slicing a max-width weight is not free even at full width: the view costs a dispatch in the forward and, in
    the backward, a zero-filled max-width gradient for the slice to be copied into. Many layers of a path run
    at their maximum width, so skipping the no-op slice removes part of the supernet's overhead over a plain
    network (benchmarks/supernet_vs_standalone.py). Plain indexing, not a generic helper: this runs ~175 times
    per forward pass and Python-level work per call adds up.
    """
    if m is None:
        return t if t.shape[0] == n else t[:n]
    return t if t.shape[0] == n and t.shape[1] == m else t[:n, :m]


class DynamicBatchNorm2d(nn.Module):
    """Batch norm over the first C channels of its max-width statistics and affine parameters."""

    running_mean: Tensor  # buffers, registered in __init__
    running_var: Tensor

    def __init__(self, channels: int, momentum: float = 0.1) -> None:
        super().__init__()
        self.momentum = momentum
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.register_buffer("running_mean", torch.zeros(channels))
        self.register_buffer("running_var", torch.ones(channels))
        self.sync = False  # under torchrun: statistics over every rank's shard (`use_sync_bn`)
        # Normalise with the batch's statistics but leave the running ones alone (slimmable training's slimmed
        # passes, `mpnas.train.slimmable.frozen_statistics`).
        self.frozen = False

    def forward(self, x: Tensor) -> Tensor:
        c = x.shape[1]
        if self.sync and self.training:
            return sync_batch_norm(x, prefix(self.running_mean, c), prefix(self.running_var, c), prefix(self.weight, c),
                                   prefix(self.bias, c), 0.0 if self.frozen else self.momentum, BN_EPS)
        if self.frozen and self.training:
            return F.batch_norm(x, None, None, prefix(self.weight, c), prefix(self.bias, c), True, 0.0, BN_EPS)
        # Slices of the buffers are views: batch_norm's in-place update of running statistics lands in them.
        return F.batch_norm(
            x, prefix(self.running_mean, c), prefix(self.running_var, c), prefix(self.weight, c), prefix(self.bias, c),
            self.training, self.momentum, BN_EPS,
        )

    def copy_to(self, bn: nn.BatchNorm2d) -> None:
        c = bn.num_features
        with torch.no_grad():
            bn.weight.copy_(self.weight[:c])
            bn.bias.copy_(self.bias[:c])
            bn.running_mean.copy_(self.running_mean[:c])
            bn.running_var.copy_(self.running_var[:c])


def sync_batch_norm(x: torch.Tensor, running_mean: torch.Tensor, running_var: torch.Tensor, weight: torch.Tensor,
                    bias: torch.Tensor, momentum: float, eps: float) -> torch.Tensor:
    """Training-mode batch norm with statistics over the whole global batch (every rank's shard), as
    `nn.SyncBatchNorm` computes them, for the sliced dynamic layers: one differentiable all-reduce of the
    per-channel sums, so the gradient also flows through the other ranks' statistics."""
    # Deferred: torch.distributed.nn exists only in builds with distributed support, and only torchrun needs it.
    from torch.distributed.nn.functional import all_reduce

    c = x.shape[1]
    xf = x.float()
    local = torch.cat([xf.sum((0, 2, 3)), (xf * xf).sum((0, 2, 3)),
                       torch.full((1,), float(x.numel() // c), device=x.device)])
    total = all_reduce(local)
    n = total[-1]
    mean = total[:c] / n
    var = (total[c : 2 * c] / n - mean * mean).clamp_min(0)
    with torch.no_grad():
        running_mean.mul_(1 - momentum).add_(momentum * mean)
        running_var.mul_(1 - momentum).add_(momentum * var * n / (n - 1))
    scale = weight * torch.rsqrt(var + eps)
    y = xf * scale.view(1, c, 1, 1) + (bias - mean * scale).view(1, c, 1, 1)
    return y.to(x.dtype)


def use_sync_bn(module: nn.Module, on: bool = True) -> int:
    """Turn global-batch statistics on (or off) in every dynamic batch norm of `module`; returns how many."""
    layers = [m for m in module.modules() if isinstance(m, DynamicBatchNorm2d)]
    for m in layers:
        m.sync = on
    return len(layers)


class DynamicConv2d(nn.Module):
    """A conv whose output width is an argument and whose input width is the input's; depthwise optional."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int, depthwise: bool = False) -> None:
        super().__init__()
        self.depthwise = depthwise
        self.kernel = kernel
        shape = (out_ch, 1, kernel, kernel) if depthwise else (out_ch, in_ch, kernel, kernel)
        self.weight = nn.Parameter(torch.empty(shape))
        nn.init.kaiming_normal_(self.weight, mode="fan_out")

    def sliced(self, in_ch: int, out_ch: int) -> Tensor:
        return prefix(self.weight, out_ch) if self.depthwise else prefix(self.weight, out_ch, in_ch)

    def forward(self, x: Tensor, out_ch: int, stride: int = 1) -> Tensor:
        c = x.shape[1]
        if self.depthwise:
            return depthwise_conv2d(x, prefix(self.weight, c), stride)
        return F.conv2d(x, self.sliced(c, out_ch), None, stride, self.kernel // 2)


class DynamicConvBN(nn.Module):
    """The stem (or any conv + BN + act) with batch norm per key, for one kernel size."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int, act: str, bn_widths: Mapping[str, int], momentum: float = 0.1):
        super().__init__()
        self.act = act
        self.conv = DynamicConv2d(in_ch, out_ch, kernel)
        self.bn = nn.ModuleDict({k: DynamicBatchNorm2d(w, momentum) for k, w in bn_widths.items()})

    def forward(self, x: Tensor, g: ConvGeometry, key: str = SHARED, mix: OpMix | None = None) -> Tensor:
        """`mix` is accepted for the stem's interface (`make_stem`); with one kernel there is nothing to mix."""
        return act_fn(self.act, self.bn[key](self.conv(x, g.out_ch, g.stride)))

    def extract(self, g: ConvGeometry, key: str = SHARED, bn_momentum: float = 0.1) -> ConvBNAct:
        m = ConvBNAct(g.in_ch, g.out_ch, g.kernel, g.stride, act=g.act, bn_momentum=bn_momentum)
        with torch.no_grad():
            m[0].weight.copy_(self.conv.sliced(g.in_ch, g.out_ch))
        self.bn[key].copy_to(m[1])
        return m


class DynamicStem(nn.Module):
    """A stem whose kernel size is a choice: one `DynamicConvBN` per kernel, chosen by the geometry's kernel.

    TuNAS builds one conv (and batch norm) per stem kernel option rather than slicing a 5x5 conv's centre for
    3x3, as it gives each depthwise kernel its own conv; the bottlenecks here do the same for theirs.
    """

    def __init__(self, in_ch: int, bn_widths: Mapping[int, Mapping[str, int]], act: str, momentum: float = 0.1) -> None:
        super().__init__()
        self.options = nn.ModuleDict(
            {f"k{k}": DynamicConvBN(in_ch, max(w.values()), k, act, w, momentum) for k, w in bn_widths.items()}
        )

    def forward(self, x: Tensor, g: ConvGeometry, key: str = SHARED, mix: OpMix | None = None) -> Tensor:
        """The chosen kernel's conv, or (search warm-up, `mix.kernel`) the average of every kernel's."""
        if mix is not None and mix.kernel:
            return torch.stack([m(x, g, key) for m in self.options.values()]).mean(0)
        return self.options[f"k{g.kernel}"](x, g, key)

    def extract(self, g: ConvGeometry, key: str = SHARED, bn_momentum: float = 0.1) -> ConvBNAct:
        return self.options[f"k{g.kernel}"].extract(g, key, bn_momentum)


def make_stem(in_ch: int, bn_widths: Mapping[int, Mapping[str, int]], act: str,
              momentum: float = 0.1) -> DynamicConvBN | DynamicStem:
    """The stem for the kernels in `bn_widths` (kernel -> batch-norm key -> width): a `DynamicStem` for several,
    and for one a plain `DynamicConvBN`, whose parameter names are those the stem had before its kernel could
    be searched, so that the checkpoints of such models still load."""
    if len(bn_widths) == 1:
        (k, widths), = bn_widths.items()
        return DynamicConvBN(in_ch, max(widths.values()), k, act, widths, momentum)
    return DynamicStem(in_ch, bn_widths, act, momentum)


class DynamicSqueezeExcite(nn.Module):
    def __init__(self, channels: int, squeeze: int) -> None:
        super().__init__()
        ref = nn.Conv2d(channels, squeeze, 1), nn.Conv2d(squeeze, channels, 1)  # PyTorch's default init
        self.fc1_weight, self.fc1_bias = nn.Parameter(ref[0].weight.data), nn.Parameter(ref[0].bias.data)
        self.fc2_weight, self.fc2_bias = nn.Parameter(ref[1].weight.data), nn.Parameter(ref[1].bias.data)

    def forward(self, x: Tensor, squeeze: int) -> Tensor:
        c = x.shape[1]
        s = x.mean((2, 3), keepdim=True)
        s = F.relu(F.conv2d(s, prefix(self.fc1_weight, squeeze, c), prefix(self.fc1_bias, squeeze)), inplace=True)
        s = F.conv2d(s, prefix(self.fc2_weight, c, squeeze), prefix(self.fc2_bias, c))
        return x * F.hardsigmoid(s)

    def copy_to(self, se: nn.Module, channels: int, squeeze: int) -> None:
        with torch.no_grad():
            se.fc1.weight.copy_(self.fc1_weight[:squeeze, :channels])
            se.fc1.bias.copy_(self.fc1_bias[:squeeze])
            se.fc2.weight.copy_(self.fc2_weight[:channels, :squeeze])
            se.fc2.bias.copy_(self.fc2_bias[:channels])


@dataclass(frozen=True)
class OpMix:
    """TuNAS's op warm-up for one layer of the supernet: which op choices run as the uniform mix of their options.

    Early in a search, with a probability that decays to 0, TuNAS replaces a sampled op choice by the average
    of all its options. Each kernel size owns its depthwise conv, so without this the shared 1x1 convs see a
    different kernel's features at every step and the supernet hardly learns (benchmarks/RESULTS.md).
    """

    kernel: bool = False  # average the outputs of every kernel's depthwise conv (each with its batch norm)
    se: bool = False  # average the layer with and without squeeze-and-excite (the geometry must include SE)
    skip: bool = False  # average the layer and the identity: x + block(x) / 2 (a skippable, residual layer)


@dataclass(frozen=True)
class Gates:
    """The gradient search's straight-through gates for one layer (or the stem) of a sampled path.

    Every entry equals 1 in the forward pass, so a gated forward computes exactly the sampled path; in the
    backward pass the entries carry the gradient to the architecture logits (`mpnas.search.relax`).
    `scale` multiplies the layer's residual branch (the stem's output): the product of the layer's op gates
    (kernel, squeeze-and-excite, keep), times the output-width mask when the block's filters are a decision,
    a scalar or one value per output channel. `expand` masks the expanded channels after the depthwise conv
    (FBNetV2's masked widths, over the sampled width only).
    """

    scale: Tensor | None = None
    expand: Tensor | None = None


def gate(x: Tensor, g: Tensor) -> Tensor:
    """`x` times a scalar gate or a per-channel mask."""
    return x * (g if g.dim() == 0 else g.view(1, -1, 1, 1))


class BNWidths(NamedTuple):
    """What one batch-norm key of a bottleneck needs: whether it has an expand conv, and its widths."""

    expands: bool
    exp_ch: int
    out_ch: int


class DynamicBottleneck(nn.Module):
    """An inverted bottleneck at max widths, with one depthwise conv per kernel size.

    Weight sharing follows TuNAS: the 1x1 expand and project convs and the SE module are shared by every
    kernel choice; each kernel size owns its depthwise conv and the batch norm after it. The supernet builds
    one per layer with every kernel; the merged model builds one per node, with that node's single kernel.
    `bn_widths` maps each batch-norm key to its `BNWidths`.
    """

    def __init__(
        self,
        in_ch: int,
        exp_ch: int,
        out_ch: int,
        kernels: tuple[int, ...],
        se_ch: int,
        act: str,
        bn_widths: Mapping[str, BNWidths],
        momentum: float = 0.1,
    ) -> None:
        super().__init__()
        self.act = act
        # An expand conv exists when some user expands (MobileNetV3 drops it when the width is unchanged).
        self.expand = DynamicConv2d(in_ch, exp_ch, 1) if any(w.expands for w in bn_widths.values()) else None
        self.expand_bn = nn.ModuleDict({k: DynamicBatchNorm2d(w.exp_ch, momentum) for k, w in bn_widths.items() if w.expands})
        self.dw = nn.ModuleDict({f"k{k}": DynamicConv2d(exp_ch, exp_ch, k, depthwise=True) for k in kernels})
        self.dw_bn = nn.ModuleDict(
            {f"k{k}": nn.ModuleDict({key: DynamicBatchNorm2d(w.exp_ch, momentum) for key, w in bn_widths.items()}) for k in kernels}
        )
        self.se = DynamicSqueezeExcite(exp_ch, se_ch) if se_ch else None
        self.project = DynamicConv2d(exp_ch, out_ch, 1)
        self.project_bn = nn.ModuleDict({key: DynamicBatchNorm2d(w.out_ch, momentum) for key, w in bn_widths.items()})

    def forward(self, x: Tensor, g: LayerGeometry, key: str = SHARED, mix: OpMix | None = None,
                gates: Gates | None = None) -> Tensor:
        """Run the candidate `g` describes; `mix` (search warm-up only) averages some op choices instead, and
        `gates` (gradient search only) route gradients to the architecture logits."""
        y = x
        if g.has_expand:
            y = act_fn(self.act, self.expand_bn[key](self.expand(y, g.exp_ch)))
        kernels = list(self.dw) if mix is not None and mix.kernel else [f"k{g.kernel}"]
        branches = [act_fn(self.act, self.dw_bn[k][key](self.dw[k](y, g.exp_ch, g.stride))) for k in kernels]
        y = branches[0] if len(branches) == 1 else torch.stack(branches).mean(0)
        if gates is not None and gates.expand is not None:
            y = gate(y, gates.expand)
        if g.se_ch:
            y = 0.5 * (y + self.se(y, g.se_ch)) if mix is not None and mix.se else self.se(y, g.se_ch)
        y = self.project_bn[key](self.project(y, g.out_ch))
        if mix is not None and mix.skip:
            y = 0.5 * y  # the layer and the identity (a skip) averaged: x + (y + 0) / 2
        if gates is not None and gates.scale is not None:
            y = gate(y, gates.scale)
        return x + y if g.residual else y

    def extract(self, g: LayerGeometry, key: str = SHARED, bn_momentum: float = 0.1) -> InvertedResidual:
        m = InvertedResidual(g, bn_momentum)
        k = f"k{g.kernel}"
        with torch.no_grad():
            if m.expand is not None:
                m.expand[0].weight.copy_(self.expand.sliced(g.in_ch, g.exp_ch))
                self.expand_bn[key].copy_to(m.expand[1])
            m.dw[0].weight.copy_(self.dw[k].sliced(g.exp_ch, g.exp_ch))
            self.dw_bn[k][key].copy_to(m.dw[1])
            if m.se is not None:
                self.se.copy_to(m.se, g.exp_ch, g.se_ch)
            m.project[0].weight.copy_(self.project.sliced(g.exp_ch, g.out_ch))
            self.project_bn[key].copy_to(m.project[1])
        return m


class DynamicHead(nn.Module):
    """The MobileNetV3 head reading any prefix of its input channels; its batch norm is per key."""

    def __init__(self, in_ch: int, conv_ch: int, hidden: int, act: str, bn_keys: tuple[str, ...], dropout: float = 0.2,
                 momentum: float = 0.1) -> None:
        super().__init__()
        self.act = act
        self.conv = DynamicConv2d(in_ch, conv_ch, 1)
        self.bn = nn.ModuleDict({k: DynamicBatchNorm2d(conv_ch, momentum) for k in bn_keys})
        self.hidden = nn.Linear(conv_ch, hidden) if hidden else None
        self.dropout = nn.Dropout(dropout)
        self.out_features = hidden or conv_ch

    def forward(self, x: Tensor, g: HeadGeometry, key: str = SHARED) -> Tensor:
        x = act_fn(self.act, self.bn[key](self.conv(x, g.conv_ch))).mean((2, 3))
        if self.hidden is not None:
            x = act_fn(self.act, self.hidden(x))
        return self.dropout(x)

    def extract(self, g: HeadGeometry, key: str = SHARED, bn_momentum: float = 0.1) -> Head:
        m = Head(g, self.dropout.p, bn_momentum)
        with torch.no_grad():
            m.conv[0].weight.copy_(self.conv.sliced(g.in_ch, g.conv_ch))
            if self.hidden is not None:
                m.hidden.load_state_dict(self.hidden.state_dict())
        self.bn[key].copy_to(m.conv[1])
        return m


__all__ = [
    "SHARED",
    "domain_key",
    "DynamicBatchNorm2d",
    "DynamicConv2d",
    "DynamicConvBN",
    "DynamicStem",
    "make_stem",
    "DynamicSqueezeExcite",
    "DynamicBottleneck",
    "DynamicHead",
    "OpMix",
    "Gates",
    "gate",
    "BNWidths",
    "make_act",
]
