"""The paper's baselines and the benchmark that compares them with MPNAS."""

from mpnas.baselines.bench import run_bench
from mpnas.baselines.tables import write_bench
from mpnas.baselines.methods import METHODS, run_method

__all__ = ["METHODS", "run_bench", "run_method", "write_bench"]
