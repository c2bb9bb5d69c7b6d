"""Checkpoints of a running stage (search or training), and resuming from them bit for bit.

A stage's whole state (`SearchState` / `TrainState`: weights, optimisers, controllers, loss state, data
positions, random generators) is written atomically every `checkpoint_every` steps and when the process gets
SIGTERM or SIGINT; the stage then stops with `Interrupted`. A later `--resume` loads the file and continues at
the step after it. Three more things make the resumed run equal to an uninterrupted one:

- torch's global generator (dropout) is saved with the state, as the generators the states hold already are;
- `metrics.jsonl` is cut back to its length at the checkpoint, so the steps run again are logged once;
- a fingerprint of everything that shapes the result (the config without threads, device and checkpoint
  interval; the architecture for training) must match, so a checkpoint of another run is refused by name.

A kill (SIGKILL, power loss) between two checkpoints loses the steps since the last one; the file itself is
replaced atomically, so a kill while it is written leaves the previous checkpoint whole.

Under torchrun every rank holds the same state (`mpnas.distributed`), so rank 0 alone writes it and every rank
reads it on resume. A signal may reach the ranks at different steps: after each step they agree (on the CPU
control group) whether any got one, and all stop after the same step.
"""

from __future__ import annotations

import hashlib
import json
import signal
import sys
import threading
import time
from pathlib import Path
from types import FrameType
from typing import Any, Callable

import torch

from mpnas.distributed import world
from mpnas.errors import MpnasError
from mpnas.rundir import CHECKPOINT_FORMAT, load_checkpoint, save_checkpoint

IGNORED_KEYS = ("threads", "device", "checkpoint_every")  # they change speed, not the result


class Interrupted(MpnasError):
    """A stage stopped on SIGTERM or SIGINT after writing its checkpoint."""

    exit_code = 130


def fingerprint(cfg_dict: dict[str, Any], **extra: Any) -> str:
    """A short hash of the result-shaping config (and `extra`, e.g. the architecture)."""
    data = {k: v for k, v in cfg_dict.items() if k not in IGNORED_KEYS}
    blob = json.dumps({"config": data, **extra}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


class Checkpointer:
    """Saves a stage every `every` steps (0: only on a signal) and on SIGTERM/SIGINT; see the module docstring.

    Use as a context manager around the step loop: it installs its signal handlers on entry (in the main thread
    only) and restores the previous ones on exit. A signal only sets a field; the loop calls `step_done` after
    each step, which writes the checkpoint and raises `Interrupted` there, between two steps."""

    def __init__(self, path: Path, stage: str, every: int, fingerprint: str, metrics: Path | None = None) -> None:
        self.path = Path(path)
        self.stage = stage
        self.every = every
        self.fingerprint = fingerprint
        self.metrics = metrics
        self.signal: int | None = None
        self.elapsed_before = 0.0  # wall seconds of the stage before the checkpoint it resumed from
        self._t0 = time.perf_counter()
        self._previous: dict[int, Any] = {}
        self.ranks = world()

    def __enter__(self) -> "Checkpointer":
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                self._previous[sig] = signal.signal(sig, self._on_signal)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self.signal = signum

    def elapsed(self) -> float:
        """Wall seconds of the stage, across resumes."""
        return self.elapsed_before + time.perf_counter() - self._t0

    def resume(self, load: Callable[[dict[str, Any]], None]) -> int | None:
        """Load the checkpoint into the stage through `load(state)`; the step it resumes at, or None if there is none."""
        if not self.path.is_file():
            return None
        ckpt = load_checkpoint(self.path)
        if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT or ckpt.get("stage") != self.stage:
            raise MpnasError(f"checkpoint {self.path}: not a {self.stage} checkpoint of mpnas ({CHECKPOINT_FORMAT}); move it away to "
                             "start this stage afresh")
        if ckpt["finished"]:
            raise MpnasError(f"checkpoint {self.path}: the {self.stage} stage it holds has finished")
        if ckpt["fingerprint"] != self.fingerprint:
            raise MpnasError(f"checkpoint {self.path}: belongs to another run (its config or architecture differs from "
                             f"this one's: fingerprint {ckpt['fingerprint']}, expected {self.fingerprint})")
        load(ckpt["state"])
        torch.set_rng_state(ckpt["torch_rng"])
        self.elapsed_before = float(ckpt["elapsed_s"])
        self._t0 = time.perf_counter()
        if self.ranks.is_main and self.metrics is not None and self.metrics.is_file():
            with open(self.metrics, "r+b") as f:
                f.truncate(int(ckpt["metrics_bytes"]))
        if self.ranks.is_main:  # where it continues, on the console and in log.txt
            print(f"mpnas: {self.stage}: resuming after step {int(ckpt['step'])} from {self.path}", file=sys.stderr,
                  flush=True)
        return int(ckpt["step"])

    def save(self, step: int, state: dict[str, Any], finished: bool = False) -> None:
        """Write the checkpoint of the stage after `step` steps (atomically; rank 0 only)."""
        if not self.ranks.is_main:
            return
        metrics_bytes = self.metrics.stat().st_size if self.metrics is not None and self.metrics.is_file() else 0
        save_checkpoint(self.path, {"format": CHECKPOINT_FORMAT, "stage": self.stage, "fingerprint": self.fingerprint,
                                    "step": step, "finished": finished, "state": state,
                                    "torch_rng": torch.get_rng_state(), "metrics_bytes": metrics_bytes,
                                    "elapsed_s": self.elapsed()})

    def due(self, step: int) -> bool:
        """Whether a checkpoint is written after `step` steps (without a signal)."""
        return self.every > 0 and step % self.every == 0

    def step_done(self, step: int, state: Callable[[], dict[str, Any]]) -> None:
        """Called after each step with the number of steps done: save when due, and stop if a signal came."""
        stop = self.ranks.any(self.signal is not None)
        if stop or self.due(step):
            self.save(step, state())
        if stop:
            name = signal.Signals(self.signal).name if self.signal is not None else "a signal to another process"
            raise Interrupted(f"{self.stage}: stopped by {name} after step {step}; checkpoint {self.path} written, "
                              "continue with --resume")


__all__ = ["Checkpointer", "Interrupted", "fingerprint"]
