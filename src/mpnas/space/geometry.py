"""What a path means in channels and pixels: the widths and feature-map sizes of every module on it.

`SearchSpace.geometry` (`mpnas.space.space`) is the one place that computes them from a path; the modules
(`mpnas.nn`), the cost model, the latency tables and the reports read these shapes and nothing else, so a shape
is worked out once. They are plain frozen data: no module or space is needed to hold one.
"""

from __future__ import annotations

from dataclasses import dataclass


def make_divisible(value: float, divisor: int = 8) -> int:
    """Round to the nearest multiple of `divisor`, never more than 10% below (MobileNet's rule)."""
    new = max(divisor, int(value + divisor / 2) // divisor * divisor)
    if new < 0.9 * value:
        new += divisor
    return new


@dataclass(frozen=True)
class ConvGeometry:
    in_ch: int
    out_ch: int
    kernel: int
    stride: int
    in_res: int
    out_res: int
    act: str


@dataclass(frozen=True)
class LayerGeometry:
    block: int
    layer: int
    in_ch: int
    exp_ch: int
    out_ch: int
    kernel: int
    se_ch: int  # 0: no squeeze-and-excite
    stride: int
    act: str
    in_res: int
    out_res: int

    @property
    def has_expand(self) -> bool:
        # As in MobileNetV3: an expansion that leaves the width unchanged has no 1x1 expand conv.
        return self.exp_ch != self.in_ch

    @property
    def residual(self) -> bool:
        return self.stride == 1 and self.in_ch == self.out_ch

    @property
    def node(self) -> str:
        return node_id(self.block, self.layer, self.kernel, self.se_ch > 0)


@dataclass(frozen=True)
class HeadGeometry:
    in_ch: int
    conv_ch: int
    hidden: int
    res: int
    act: str


@dataclass(frozen=True)
class PathGeometry:
    stem: ConvGeometry
    layers: tuple[LayerGeometry, ...]
    head: HeadGeometry

    def nodes(self) -> list[str]:
        return [g.node for g in self.layers]


def node_id(block: int, layer: int, kernel: int, se: bool) -> str:
    """A node is one candidate block of one layer: its kernel size and squeeze-and-excite choice.

    Expansion and output filters are widths inside a node (channel prefixes of its weights), so two domains
    that pick the same kernel and SE at the same layer share the node whatever widths they use.
    """
    return f"b{block}.l{layer}.k{kernel}" + (".se" if se else "")


def conv_out(res: int, stride: int) -> int:
    return (res - 1) // stride + 1  # odd kernels with 'same' padding


__all__ = ["ConvGeometry", "HeadGeometry", "LayerGeometry", "PathGeometry", "conv_out", "make_divisible", "node_id"]
