"""A run directory: the files a run's stages write and read, their names, and how each is read and written.

    DIR/config.yaml          the resolved configuration (written by the first stage, read by the others)
    DIR/architecture.json    search: each domain's path and which domains use each node
    DIR/search_state.pt      search: its checkpoint while it runs (`mpnas.train.checkpoint`), then its final state
                             (supernet, controllers, optimisers, data position)
    DIR/model.safetensors    train: the best weights of the merged model, architecture in the metadata
    DIR/domains.json         train: class names, resolution and normalisation per domain (for predict, export)
    DIR/train_state.pt       train: its checkpoint while it runs, then the final training state
    DIR/slim_table.json      train, slimmable runs: measured width configurations (`mpnas configure` reads it)
    DIR/metrics.jsonl        every stage: one JSON row per logged event
    DIR/stages.json          which stages finished and their wall times
    DIR/results.json         evaluate: per-domain top-1, parameters, MACs, Jaccard, decathlon score
    DIR/report.md, figures/  report
    DIR/log.txt              what the console showed, appended by every command run on the directory (`mpnas.console`)

Everything that reads or writes a run (the pipeline's stages, deployment, the baselines, the CLI, the report)
finds the files here, so none of them has to climb to another to open a run. It sits just above the space and
the data, because a run's files hold an architecture and its domains; what turns them into modules (the merged
model) is `mpnas.train.evaluate.load_trained_model`.

Under torchrun only rank 0 writes these files (`mpnas.io`); what is decided from them (is a stage finished) is
decided by rank 0 for all (`World.decide`).
"""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save
from torch import nn

from mpnas.config import RunConfig, dump_yaml, load_yaml
from mpnas.data import DomainSet, load_domains_from_config
from mpnas.data.info import DomainInfo, infos_from_domains, rgb
from mpnas.distributed import world
from mpnas.errors import MpnasError
from mpnas.io import atomic_write_bytes, atomic_write_text, make_dir, read_json, read_jsonl, write_json
from mpnas.space.arch import Architecture
from mpnas.space.configure import Table

CONFIG, ARCH, WEIGHTS, RESULTS, STAGES = "config.yaml", "architecture.json", "model.safetensors", "results.json", "stages.json"
SEARCH_STATE, TRAIN_STATE, METRICS = "search_state.pt", "train_state.pt", "metrics.jsonl"
DOMAINS, SLIM_TABLE, REPORT, FIGURES, LOG = "domains.json", "slim_table.json", "report.md", "figures", "log.txt"
STAGES_IN_ORDER = ("search", "train", "evaluate", "report")
# What each stage writes; `--overwrite` of a stage removes its outputs and those of every later stage.
OUTPUTS = {"search": (ARCH, SEARCH_STATE), "train": (WEIGHTS, TRAIN_STATE, DOMAINS, SLIM_TABLE),
           "evaluate": (RESULTS,), "report": (REPORT, FIGURES)}
TRAIN_ROWS = ("train", "train_eval")  # the `stage` of training's rows in metrics.jsonl; the others are the search's

WEIGHTS_FORMAT = "mpnas.weights/1"
DOMAINS_FORMAT = "mpnas.domains/1"
CHECKPOINT_FORMAT = "mpnas.checkpoint/1"


# ---------------------------------------------------------------------------------------------------------
# Config, architecture and data.


def write_config(run_dir: Path, cfg: RunConfig) -> None:
    if world().is_main:
        make_dir(run_dir)
        atomic_write_text(run_dir / CONFIG, dump_yaml(cfg))


def read_config(run_dir: Path) -> RunConfig:
    if not (run_dir / CONFIG).is_file():
        raise MpnasError(f"run directory {run_dir}: no {CONFIG} (is this a directory written by `mpnas search` or `mpnas run`?)")
    return load_yaml(run_dir / CONFIG)


def read_architecture(run_dir: Path) -> Architecture:
    if not (run_dir / ARCH).is_file():
        raise MpnasError(f"run directory {run_dir}: no {ARCH}; run `mpnas search --out {run_dir}` first")
    return Architecture.load(run_dir / ARCH)


def load_data(cfg: RunConfig, progress: bool = True) -> DomainSet:
    """The run's domains; under torchrun rank 0 loads first, so that it alone fills the decoded-data cache."""
    ranks = world()
    if not ranks.active:
        return load_domains_from_config(cfg.data, progress=progress)
    domains = load_domains_from_config(cfg.data, progress=progress) if ranks.is_main else None
    ranks.barrier()
    return domains or load_domains_from_config(cfg.data, progress=False)


# ---------------------------------------------------------------------------------------------------------
# Stages: which finished, how long they took, and removing their outputs.


def mark_stage(run_dir: Path, stage: str, seconds: float, **info: Any) -> None:
    if not world().is_main:
        return
    stages = read_json(run_dir / STAGES, "stages file") if (run_dir / STAGES).is_file() else {}
    stages[stage] = {"finished": True, "wall_time_s": round(seconds, 2), **info}
    write_json(run_dir / STAGES, stages)


def stage_finished(run_dir: Path, stage: str) -> bool:
    """Whether `stage` finished in `run_dir` (decided by rank 0 under torchrun)."""
    return world().decide(lambda: stage_finished_here(run_dir, stage))


def stage_finished_here(run_dir: Path, stage: str) -> bool:
    """Whether `stage` finished in `run_dir`, read by this process alone."""
    if not (run_dir / STAGES).is_file():
        return False
    return bool(read_json(run_dir / STAGES, "stages file").get(stage, {}).get("finished"))


def stage_times(run_dir: Path) -> dict[str, float]:
    if not (run_dir / STAGES).is_file():
        return {}
    return {k: v.get("wall_time_s", 0.0) for k, v in read_json(run_dir / STAGES, "stages file").items()}


def run_status(run_dir: Path, stage: str = "run") -> str:
    """"finished", "unfinished" or "none" for `stage` ("run": the whole method, or "search", "train") in `run_dir`.

    Only checkpoints and finished stages count as a run: a directory holding nothing but config.yaml (a command
    that stopped before computing anything) or a log holds none, so any corrected command may start there."""
    last = "evaluate" if stage == "run" else stage
    if not run_dir.is_dir():
        return "none"
    if stage_finished_here(run_dir, last):
        return "finished"
    started = {"run": (SEARCH_STATE, TRAIN_STATE, STAGES), "search": (SEARCH_STATE,), "train": (TRAIN_STATE,)}
    return "unfinished" if any((run_dir / f).is_file() for f in started[stage]) else "none"


def remove_outputs(run_dir: Path, stage: str) -> None:
    """`--overwrite`: remove what `stage` ("run", "search" or "train") and every later stage wrote (rank 0). A run
    or its search loses everything mpnas wrote; training keeps the config and the search's rows of metrics.jsonl."""
    if not world().is_main or not run_dir.is_dir():
        return
    first = "search" if stage == "run" else stage
    names = [f for s in STAGES_IN_ORDER[STAGES_IN_ORDER.index(first):] for f in OUTPUTS[s]]
    if first == "search":
        names += [CONFIG, METRICS, STAGES, LOG]
    else:
        drop_metrics(run_dir, TRAIN_ROWS)
        stages = read_json(run_dir / STAGES, "stages file") if (run_dir / STAGES).is_file() else {}
        if stages:
            write_json(run_dir / STAGES, {k: v for k, v in stages.items() if k not in STAGES_IN_ORDER[1:]})
    try:
        for name in names:
            path = run_dir / name
            if path.is_dir():
                shutil.rmtree(path)
            else:
                path.unlink(missing_ok=True)
    except OSError as exc:
        raise MpnasError(f"--overwrite: cannot remove {exc.filename or run_dir}: {exc.strerror or exc}") from None


def drop_metrics(run_dir: Path, stages: tuple[str, ...] | None) -> None:
    """Remove the rows of `stages` (None: every row) from metrics.jsonl: a stage that starts afresh must not leave
    an earlier attempt's rows mixed with its own."""
    path = run_dir / METRICS
    if not world().is_main or not path.is_file():
        return
    if stages is None:
        path.unlink()
        return
    kept = [r for r in read_jsonl(path) if r.get("stage") not in stages]
    atomic_write_text(path, "".join(json.dumps(r) + "\n" for r in kept))


# ---------------------------------------------------------------------------------------------------------
# Results.


def finished_results(run_dir: Path) -> dict[str, Any] | None:
    """A finished run's results.json (None while it has none: the run has not been evaluated)."""
    return read_json(run_dir / RESULTS, "results file") if (run_dir / RESULTS).is_file() else None


def write_results(run_dir: Path, results: dict[str, Any]) -> None:
    write_json(run_dir / RESULTS, results)


# ---------------------------------------------------------------------------------------------------------
# Weights.


def save_weights(model: nn.Module, path: str | Path, arch: Architecture, extra: dict[str, Any] | None = None) -> None:
    """Weights in safetensors, with the architecture in the metadata so the file describes itself."""
    meta = {"format": WEIGHTS_FORMAT, "architecture": json.dumps(arch.to_dict())}
    meta.update({k: json.dumps(v) for k, v in (extra or {}).items()})
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    atomic_write_bytes(path, st_save(tensors, metadata=meta))


def load_weights(model: nn.Module, path: str | Path) -> None:
    """Load a weights file written by `save_weights` into `model`. A safetensors file without mpnas's format tag
    (another tool's) is refused by name, rather than loaded into whatever tensors happen to match."""
    path = Path(path)
    if not path.is_file():
        raise MpnasError(f"weights {path}: not found (run `mpnas train` first)")
    try:
        with safe_open(str(path), "pt") as f:
            meta = f.metadata() or {}
        tensors = st_load(path.read_bytes())
    except Exception as exc:  # safetensors raises its own error types for truncated or foreign files
        raise MpnasError(f"weights {path}: not a readable safetensors file ({exc})") from exc
    if meta.get("format") != WEIGHTS_FORMAT:
        raise MpnasError(f"weights {path}: not an mpnas weights file (format {meta.get('format')!r}, expected "
                         f"{WEIGHTS_FORMAT!r})")
    missing, unexpected = model.load_state_dict(tensors, strict=False)
    if missing or unexpected:
        raise MpnasError(
            f"weights {path}: do not match the architecture ({len(missing)} missing, {len(unexpected)} unexpected tensors, "
            f"e.g. {(missing or unexpected)[0]})"
        )


# ---------------------------------------------------------------------------------------------------------
# Domains.


def write_domain_info(run_dir: Path, domains: DomainSet, before: dict[str, DomainInfo] | None = None) -> None:
    """domains.json: what prediction needs of each domain; `before` (a trained run's, when adding domains) first."""
    infos = {**(before or {}), **infos_from_domains(domains)}
    write_json(run_dir / DOMAINS, {"format": DOMAINS_FORMAT, "domains": {n: i.to_dict() for n, i in infos.items()}})


def read_domain_info(run_dir: Path) -> dict[str, DomainInfo]:
    """The run's domains; a run trained before `domains.json` existed falls back to loading its data source."""
    path = run_dir / DOMAINS
    if not path.is_file():
        return infos_from_domains(load_data(read_config(run_dir), progress=False))
    data = read_json(path, "domains file")
    if not isinstance(data, dict) or data.get("format") != DOMAINS_FORMAT or not isinstance(data.get("domains"), dict):
        raise MpnasError(f"domains file {path}: not an {DOMAINS_FORMAT} file")
    out = {}
    for name, d in data["domains"].items():
        try:
            out[name] = DomainInfo(name, tuple(str(c) for c in d["classes"]), int(d["resolution"]), rgb(d["mean"]),
                                   rgb(d["std"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise MpnasError(f"domains file {path}: domain {name!r} is malformed ({exc})") from None
    return out


# ---------------------------------------------------------------------------------------------------------
# Checkpoints (`mpnas.train.checkpoint` writes them while a stage runs).


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> None:
    """Tensors, numbers, strings, lists and dicts only, so that loading needs no pickled code."""
    buf = io.BytesIO()
    torch.save(state, buf)
    atomic_write_bytes(path, buf.getvalue())


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise MpnasError(f"checkpoint {path}: not found")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a truncated or foreign file: say which, not a pickle traceback
        raise MpnasError(f"checkpoint {path}: cannot be read ({type(exc).__name__}: {exc})") from exc


def read_state(path: Path) -> dict[str, Any]:
    """The stage state of a checkpoint file, in the wrapped format or the bare `state_dict()` older runs wrote."""
    ckpt = load_checkpoint(path)
    if isinstance(ckpt, dict) and ckpt.get("format") == CHECKPOINT_FORMAT:
        return ckpt["state"]
    return ckpt


def finished_checkpoint(path: Path, fingerprint: str) -> dict[str, Any] | None:
    """What a stage's checkpoint records when it holds this run's (`fingerprint`) finished stage: its final state
    was written, and the process was killed before the stage was marked finished. None otherwise."""
    if not path.is_file():
        return None
    data = load_checkpoint(path)
    if not (isinstance(data, dict) and data.get("format") == CHECKPOINT_FORMAT and data.get("finished")
            and data.get("fingerprint") == fingerprint):
        return None
    state = data["state"]
    return {"elapsed_s": float(data["elapsed_s"]), "best_step": state.get("best_step"),
            "best_score": state.get("best_score")}


# ---------------------------------------------------------------------------------------------------------
# The slim table of a slimmable run.


def read_slim_table(run_dir: Path, arch: Architecture) -> Table:
    """slim_table.json, written by `mpnas.train.slimmable.profile`, fitted for `arch` (`mpnas.space.configure`)."""
    path = run_dir / SLIM_TABLE
    if not path.is_file():
        raise MpnasError(f"run {run_dir}: no {SLIM_TABLE}; configure needs a run trained with train.slimmable=true")
    return Table.from_dict(read_json(path, "slim table"), arch, f"slim table {path}")
