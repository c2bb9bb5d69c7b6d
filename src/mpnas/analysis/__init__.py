"""Analysis of a run directory: scores, figures and report.md (matplotlib loads only when a figure is drawn)."""

from mpnas.analysis.figures import (
    NothingToDraw,
    domain_colors,
    plot_accuracy,
    plot_architecture,
    plot_controller_probs,
    plot_jaccard,
    plot_rewards,
    plot_training,
)
from mpnas.analysis.metrics import DECATHLON_BASELINE_TOP1, decathlon_points, decathlon_score, top1
from mpnas.analysis.nodes import NodeUse, format_path, node_table
from mpnas.analysis.report import write_report

__all__ = [
    "DECATHLON_BASELINE_TOP1",
    "NodeUse",
    "NothingToDraw",
    "decathlon_points",
    "decathlon_score",
    "domain_colors",
    "format_path",
    "node_table",
    "plot_accuracy",
    "plot_architecture",
    "plot_controller_probs",
    "plot_jaccard",
    "plot_rewards",
    "plot_training",
    "top1",
    "write_report",
]
