"""The report's figures, one PNG per function, each returning the path it wrote.

matplotlib is imported inside the functions (it takes about a second to import and only reports need it), and
every figure is a bare `Figure` on the Agg canvas, so pyplot's global backend is never switched. Functions that
read metric rows take all rows and keep their own stage, ignoring rows they do not understand; `domains` fixes
the order and colours, so a domain has the same colour in every figure of a report.

One module per family: `results` (top-1, Jaccard), `architecture` (the merged architecture), `curves` (search
and training from the metric rows); `common` holds what they share.
"""

from mpnas.analysis.figures.architecture import plot_architecture
from mpnas.analysis.figures.common import NothingToDraw, domain_colors
from mpnas.analysis.figures.curves import plot_controller_probs, plot_rewards, plot_training
from mpnas.analysis.figures.results import plot_accuracy, plot_jaccard

__all__ = ["NothingToDraw", "domain_colors", "plot_accuracy", "plot_architecture", "plot_controller_probs",
           "plot_jaccard", "plot_rewards", "plot_training"]
