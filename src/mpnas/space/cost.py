"""Exact parameter and multiply-add (MAC) counts, computed from the geometry alone.

MACs count convolutions and fully connected layers (what `torch.utils.flop_counter` counts, halved), as the
published MobileNetV3 figures do; batch norm, activations, pooling and SE's elementwise gate are not counted.

For a merged architecture, parameters count each module once (a shared node or stem conv once, at the width of
its widest user; batch norm once per domain that uses it). MACs are the sum of the domains' paths: classifying one image
of each domain, since different domains' images take different inputs through a shared node.
"""

from __future__ import annotations

from dataclasses import dataclass

from mpnas.space.arch import Architecture
from mpnas.space.geometry import LayerGeometry, PathGeometry
from mpnas.space.space import Path, SearchSpace


@dataclass(frozen=True)
class Cost:
    params: int
    macs: int


def layer_params(g: LayerGeometry) -> int:
    """One layer's parameters as a standalone module (its convs, SE and batch norms)."""
    p = g.exp_ch * g.kernel * g.kernel + 2 * g.exp_ch  # depthwise + BN
    if g.has_expand:
        p += g.in_ch * g.exp_ch + 2 * g.exp_ch
    if g.se_ch:
        p += 2 * g.exp_ch * g.se_ch + g.se_ch + g.exp_ch
    return p + g.exp_ch * g.out_ch + 2 * g.out_ch


def layer_macs(g: LayerGeometry) -> int:
    m = g.out_res**2 * g.exp_ch * g.kernel * g.kernel + g.out_res**2 * g.exp_ch * g.out_ch
    if g.has_expand:
        m += g.in_res**2 * g.in_ch * g.exp_ch
    if g.se_ch:
        m += 2 * g.exp_ch * g.se_ch
    return m


def _head_out(geo: PathGeometry) -> int:
    return geo.head.hidden or geo.head.conv_ch


def geometry_cost(geo: PathGeometry, num_classes: int) -> Cost:
    s, h = geo.stem, geo.head
    params = s.in_ch * s.out_ch * s.kernel**2 + 2 * s.out_ch
    macs = s.out_res**2 * s.in_ch * s.out_ch * s.kernel**2
    for g in geo.layers:
        params += layer_params(g)
        macs += layer_macs(g)
    params += h.in_ch * h.conv_ch + 2 * h.conv_ch
    macs += h.res**2 * h.in_ch * h.conv_ch
    if h.hidden:
        params += h.conv_ch * h.hidden + h.hidden
        macs += h.conv_ch * h.hidden
    params += _head_out(geo) * num_classes + num_classes
    macs += _head_out(geo) * num_classes
    return Cost(params, macs)


def path_cost(space: SearchSpace, path: Path, num_classes: int) -> Cost:
    return geometry_cost(space.geometry(path), num_classes)


def architecture_cost(arch: Architecture, bn_per_domain: bool = True) -> Cost:
    """Cost of the merged model (see the module docstring for what is counted once); batch norm per domain
    unless `bn_per_domain` is False (then one per node, as wide as its widest user)."""
    space = arch.space
    geos = {d: space.geometry(p) for d, p in arch.paths.items()}
    stems: dict[int, list[int]] = {}  # stem kernel -> its users' widths: one conv per kernel chosen
    for geo in geos.values():
        stems.setdefault(geo.stem.kernel, []).append(geo.stem.out_ch)
    params = 0
    for k, widths in stems.items():
        params += 3 * max(widths) * k * k + 2 * (sum(widths) if bn_per_domain else max(widths))
    users: dict[str, list[LayerGeometry]] = {}
    for geo in geos.values():
        for g in geo.layers:
            users.setdefault(g.node, []).append(g)
    for us in users.values():
        i, e, o = (max(getattr(g, f) for g in us) for f in ("in_ch", "exp_ch", "out_ch"))
        se, kern = max(g.se_ch for g in us), us[0].kernel
        if any(g.has_expand for g in us):
            params += i * e
        params += e * kern * kern + e * o
        if se:
            params += 2 * e * se + se + e
        if bn_per_domain:
            params += sum(2 * g.exp_ch * (2 if g.has_expand else 1) + 2 * g.out_ch for g in us)
        else:
            params += 2 * e * (2 if any(g.has_expand for g in us) else 1) + 2 * o
    h = next(iter(geos.values())).head
    params += max(g.head.in_ch for g in geos.values()) * h.conv_ch + 2 * h.conv_ch * (len(geos) if bn_per_domain else 1)
    if h.hidden:
        params += h.conv_ch * h.hidden + h.hidden
    params += sum((_head_out(geos[d]) + 1) * n for d, n in arch.num_classes.items())
    macs = sum(geometry_cost(geos[d], arch.num_classes[d]).macs for d in arch.domains)
    return Cost(params, macs)


def domain_costs(arch: Architecture) -> dict[str, Cost]:
    """Each domain's own path as a standalone network."""
    return {d: path_cost(arch.space, arch.paths[d], arch.num_classes[d]) for d in arch.domains}
