"""A labelled grid of samples per domain, to see at a glance what a source holds."""

from __future__ import annotations

from pathlib import Path

import torch

from mpnas.data.domain import DomainSet
from mpnas.data.seeding import generator
from mpnas.errors import MpnasError


def pick_samples(labels: torch.Tensor, count: int, gen: torch.Generator) -> list[int]:
    """`count` indices covering as many classes as possible: one per class (classes in random order) first."""
    order = torch.randperm(len(labels), generator=gen)
    picked: list[int] = []
    seen: set[int] = set()
    for i in order.tolist():
        if int(labels[i]) not in seen:
            seen.add(int(labels[i]))
            picked.append(i)
            if len(picked) == count:
                return picked
    rest = [i for i in order.tolist() if i not in set(picked)]
    return picked + rest[: count - len(picked)]


def save_preview(domains: DomainSet, out: str | Path, per_domain: int = 8, *, split: str = "train", seed: int = 0) -> Path:
    """Save a PNG with one row per domain and `per_domain` training images titled with their class names."""
    if per_domain < 1:
        raise MpnasError(f"preview: --per-domain must be at least 1, got {per_domain}")
    # A bare Figure draws with the Agg canvas and leaves pyplot's global backend alone (lazy: matplotlib is slow
    # to import and only this command needs it).
    from matplotlib.figure import Figure

    out = Path(out)
    rows = len(domains)
    fig = Figure(figsize=(1.3 * per_domain + 0.9, 1.45 * rows))
    axes = fig.subplots(rows, per_domain, squeeze=False)
    for r, domain in enumerate(domains):
        data = domain.splits[split]
        labels = data.labels if data.labels is not None else torch.zeros(len(data), dtype=torch.int64)
        picks = pick_samples(labels, min(per_domain, len(data)), generator(seed, "preview", domain.name))
        for c in range(per_domain):
            ax = axes[r][c]
            ax.set_xticks([])
            ax.set_yticks([])
            for spine in ax.spines.values():
                spine.set_visible(False)
            if c >= len(picks):
                continue
            i = picks[c]
            ax.imshow(data.images[i].permute(1, 2, 0).numpy(), interpolation="nearest")
            title = domain.class_names[int(labels[i])] if data.labels is not None else "?"
            ax.set_title(title if len(title) <= 14 else title[:13] + "…", fontsize=8)
        axes[r][0].set_ylabel(f"{domain.name}\n{domain.num_classes} classes", fontsize=9)
    fig.suptitle(f"{domains.source} — {split} split, {domains.domains[0].resolution} px", fontsize=10)
    fig.tight_layout()
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(out, dpi=110)
    except OSError as exc:
        raise MpnasError(f"preview {out}: cannot write ({exc.strerror or exc})") from None
    return out
