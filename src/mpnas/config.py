"""Typed configuration: dataclasses, loadable from YAML, overridable from the command line.

A run's whole configuration is one `RunConfig`. Budgets (`quick`, `default`, `paper`) are named presets of
its numbers, never a different code path. The resolved config is written into every run directory.
"""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import yaml

from mpnas.errors import MpnasError

T = TypeVar("T")

# The names each enumerated field accepts (the components that implement them import these).
LOSS_KINDS = ("x", "x2", "exp", "exp_dec", "exp_inc", "uwl", "empirical")
OPTIMIZERS = ("rmsprop", "sgd", "adamw", "adam")
REWARDS = ("mnas", "mnas_hard", "abs")
QUALITIES = ("top1", "prob", "likelihood")
SPACE_PRESETS = ("default", "default-4x4", "paper", "mobilenet_v3_large", "mobilenet_v3_small")
PRECISIONS = ("auto", "fp32", "bf16")
STRATEGIES = ("rl", "gradient")
INITS = ("pytorch", "torchvision")
_FLOAT = re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$")


@dataclass
class DataConfig:
    spec: str = "builtin"  # builtin | decathlon:ROOT | folder:ROOT
    domains: list[str] | None = None  # None: every domain of the source
    resolution: int = 32
    seed: int = 0  # fixes splits carved by mpnas and the order of batches
    skip_bad_images: bool = False
    cache_dir: str | None = None  # None: $MPNAS_CACHE or the user's cache directory


@dataclass
class SpaceConfig:
    preset: str = "default"  # default | default-4x4 | paper | mobilenet_v3_large | mobilenet_v3_small
    width_mult: float = 1.0
    layers_per_block: int | None = None  # None: the preset's own


@dataclass
class ModelConfig:
    """How the networks of every stage are built (the search's supernet and every method's merged model alike)."""

    # "pytorch": PyTorch's default init of linear layers and squeeze-and-excite convs (the convs of the blocks are
    # Kaiming-normal, fan out); "torchvision": MobileNetV3's (torchvision), linear layers N(0, 0.01) with zero bias.
    init: str = "pytorch"
    # The last batch norm of every residual branch starts at zero (Goyal et al.), so each residual block starts
    # as the identity and the network as a shallow one. With train.batch_per_class it brought the 47-class glyph
    # domain's take-off (3x chance) from step 200-225 to 100-125 of 1000 (benchmarks/RESULTS.md, issue 24).
    zero_init_residual: bool = True
    bn_momentum: float = 0.1


@dataclass
class LossConfig:
    """How the domains' losses combine into one (ABDP and its variants, seed 002 Eq. 2-3, Table 5)."""

    kind: str = "exp_dec"  # x | x2 | exp | exp_dec | exp_inc | uwl | empirical
    w: float = 1.0  # the constant w of `exp`
    w_max: float = 2.0  # `exp_dec` goes w_max -> w_min, `exp_inc` w_min -> w_max
    w_min: float = 1.0
    weights: dict[str, float] = field(default_factory=dict)  # `empirical`: per-domain weight, 1 if absent
    normalize: bool = False  # rescale the weights h'(L_i) to mean 1 (for SGD, which does not normalise)


@dataclass
class OptimConfig:
    """The optimiser of the network weights (search's supernet, training's merged model).

    CPU budgets use AdamW: RMSProp with TuNAS's epsilon of 1.0 acts like momentum SGD at its learning rate and
    left the 47-class glyph domain at chance after 1000 steps (benchmarks/RESULTS.md); AdamW lifted it to
    about 33% in 600. The paper budget uses the paper's RMSProp.
    """

    name: str = "adamw"  # adamw | adam | rmsprop | sgd
    lr: float = 2e-3
    momentum: float = 0.9  # rmsprop and sgd
    weight_decay: float = 0.01
    eps: float = 1.0  # rmsprop's epsilon (TuNAS uses 1.0); adam/adamw use PyTorch's default
    warmup_frac: float = 0.025  # linear warm-up, then cosine decay to 0
    # Clipping at 5 guards the CPU budgets' short AdamW runs against the occasional spike of a freshly sampled
    # path in the supernet; the paper (seed 002 §5) and TuNAS do not clip, so the `paper` budget turns it off.
    grad_clip: float | None = 5.0


@dataclass
class SearchConfig:
    steps: int | None = 400
    epochs: float | None = None  # instead of steps: epochs of the largest domain's training split
    batch_size: int = 32  # per domain
    batch_per_class: float = 2.0  # as train.batch_per_class, for the supernet's training batches
    val_batch_size: int | None = None  # None: 4 x batch_size, as TuNAS
    optim: OptimConfig = field(default_factory=OptimConfig)
    rl_start: float = 0.125  # fraction of steps before the controllers learn (seed 002: 1/8)
    # The paper's 0.165 (the `paper` budget) converges the controllers at the CPU budgets (final entropy 4 against
    # 18 nats) without finding more accurate paths (-0.7 points, inside the seed noise: benchmarks/RESULTS.md);
    # 0.05 leaves the end-of-search selection a wider pool of candidates.
    controller_lr: float = 0.05
    controller_lr_end_mult: float = 1.0  # TuNAS raises the RL learning rate 10x by the end of search
    baseline_momentum: float = 0.95
    reward: str = "mnas"  # mnas | mnas_hard | abs
    beta: float | None = None  # None: -0.07 for mnas rewards, -0.10 for abs
    t0: float | dict[str, float] | None = None  # target cost; None: derived from the space
    latency_table: str | None = None  # a table from `mpnas latency-table`; else MACs are the cost
    quality: str = "top1"  # Q of the reward: top1 | prob (mean probability of the true class) | likelihood (exp(-CE))
    samples_per_step: int = 1  # paths per controller scored each RL step on one validation batch (>1: leave-one-out)
    final_candidates: int = 1  # >1: the most likely path and samples of the final controller, ranked by the supernet
    final_batches: int = 8  # validation batches (of val_batch_size) every final candidate is scored on
    # The shortlist step (mpnas.search.shortlist): the supernet's best `shortlist` final candidates (0: off) are each
    # trained alone for `shortlist_steps` steps on their domains, and the best validation reward is kept; the
    # time is the search's. Needs final_candidates >= shortlist.
    shortlist: int = 0
    shortlist_steps: int = 100
    filter_warmup: bool = True  # before rl_start: widths at their largest, with a probability decaying 1 -> 0 (TuNAS)
    op_warmup: bool = True  # before rl_start: op choices as the average of all their options, likewise (TuNAS)
    # FairNAS's strict fairness: each weight step trains a fair set of paths (every kernel and skip of every layer
    # once; mpnas.space.sampling.fair_choices) instead of the controller's one sample, which is still scored for
    # the reward. It replaces the warm-ups (a fair set already trains every option) and costs K forward and
    # backward passes per step (K = 4 in the default space). RL only.
    fair_sampling: bool = False
    # The sandwich rule (BigNAS): each weight step also trains the sampled path at its largest and smallest widths
    # (filters and expansions), so every width slice is trained; 3 forward and backward passes per step. RL only.
    sandwich: bool = False
    # `rl`: REINFORCE controllers (seed 002). `gradient`: the same logits trained by straight-through Gumbel samples
    # on the validation loss, a differentiable expected cost and a minimum-entropy regulariser (seed 004; see
    # mpnas.search.gradient). The gradient strategy uses rl_start and the warm-ups as RL does.
    strategy: str = "rl"
    # gradient: Adam's learning rate for the logits. Adam moves a logit by about lr per step whatever the gradient's
    # size, so the consistent cost gradient outweighs the noisy cross-entropy one at RL's 0.05: a 40-step search
    # collapsed to a quarter of T0; lr x steps near DARTS's total (3e-4 x ~20k) keeps the cost from running away.
    arch_lr: float = 0.02
    tau_start: float = 5.0  # gradient: Gumbel-softmax temperature, decayed geometrically to tau_end
    tau_end: float = 0.5
    # gradient: weight of the entropy term at the end; it ramps up linearly from 0. At 0.1 a default search ended at a
    # mean maximum probability of 0.90 (0.84 to 0.98 over domains), short of near-discrete for some domains.
    entropy_weight: float = 0.2
    # gradient: how the op choices (kernel, squeeze-and-excite, skip) learn. `relaxed`: through the straight-through
    # gates, as the widths do. `reinforce`: a REINFORCE term on the validation cross-entropy against a moving
    # baseline (search.baseline_momentum), their gates held at 1, so only widths take gate gradients; the cost
    # still reaches every decision through the exact expected cost. Issue 16 found the gates' first-order gradient
    # leaning towards skipping and narrowing; the score-function estimator has no such bias, only variance.
    gradient_ops: str = "relaxed"
    # gradient: the first fraction of the learning steps (after rl_start) in which the controllers learn by
    # REINFORCE on the MnasNet reward, as search.strategy=rl does (with the gradient strategy's optimiser and
    # search.arch_lr); the gradient step takes over from the distribution RL reached (a warm start from RL).
    gradient_rl_fraction: float = 0.0
    log_every: int = 10


@dataclass
class TrainConfig:
    steps: int | None = 1000
    epochs: float | None = None  # instead of steps: epochs of the largest domain's training split
    log_every: int = 20
    batch_size: int = 32  # per domain
    # A domain's batch holds at least this many images per class (rounded up to 8, at most 4x batch_size): a domain
    # with many classes leaves chance after as many images per class as the others (mpnas.data.class_batch_sizes).
    # At 2 the built-in glyphs (47 classes) trains at 96 and signs (17) at 40; the other domains keep batch_size.
    batch_per_class: float = 2.0
    optim: OptimConfig = field(default_factory=OptimConfig)
    label_smoothing: float = 0.1
    eval_every: int = 200  # steps between per-domain validations ("epochs" of a multi-domain run)
    eval_batch_size: int = 256
    dropout: float = 0.2
    # Batch norm per domain in every node of the merged model (default), or shared by the domains that share a
    # node's convolutions, so that only the classifiers are per domain.
    bn_per_domain: bool = True
    # Single-shot use (seed 004): start from the search's supernet weights for the derived paths (search_state.pt of
    # the run), recalibrate batch norm on `recalibrate_batches` training batches per domain, then fine-tune for
    # `finetune_steps` (0: none) at `finetune_lr_mult` times the learning rate, instead of `steps` from scratch.
    from_supernet: bool = False
    finetune_steps: int = 150
    finetune_lr_mult: float = 0.25
    recalibrate_batches: int = 20
    # Slimmable training (seed 003): every step also trains each domain's path at its smallest widths and at
    # `slim_random` random width configurations (the sandwich rule), drawn from `slim_multipliers` of each width
    # unit (`mpnas.space.widths`). The slimmed passes learn from the full widths' predictions (in-place distillation,
    # weight `slim_distill`; the rest is the labels' cross-entropy). After training, `slim_profile` random width
    # configurations are measured on validation data for `mpnas configure` (`mpnas.train.slimmable`).
    slimmable: bool = False
    slim_multipliers: list[float] = field(default_factory=lambda: [0.5, 0.75, 1.0])
    slim_random: int = 1
    slim_distill: float = 0.5
    slim_profile: int = 24
    # Fraction of the steps that train the full widths alone before the sandwich starts (Once-for-All trains its
    # largest network first): the slimmed passes then learn from a teacher that already knows something.
    slim_start: float = 0.0


@dataclass
class BaselineConfig:
    mrp_trials: int = 3  # random-path trials averaged by MRP (the paper used 10)
    trl_ratio: float = 0.9  # fraction of channels each domain keeps after every block (task routing layers)


@dataclass
class AddDomainConfig:
    # `mpnas add-domain`: the most parameters one new domain may add to the trained model (new nodes, its batch
    # norms and classifier), as a fraction of the trained model's parameters per domain (its total over its domain
    # count). A path over it is never drawn, like one that does not fit. At 0.5 a new domain adds at most half of
    # what an average trained domain holds; without a cap the soft reward's weak pressure (beta = -0.07) let a
    # searched textures path add 1.5x the parameters of its stand-alone SD-NAS model, reusing one node of seven.
    params_budget: float = 0.5


@dataclass
class RunConfig:
    data: DataConfig = field(default_factory=DataConfig)
    space: SpaceConfig = field(default_factory=SpaceConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    search: SearchConfig = field(default_factory=SearchConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    baselines: BaselineConfig = field(default_factory=BaselineConfig)
    add_domain: AddDomainConfig = field(default_factory=AddDomainConfig)
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    threads: int | None = None  # torch intra-op threads; None leaves torch's default
    budget: str = "default"
    # Steps between checkpoints of a running search or training (0: only on SIGTERM/SIGINT). 100 steps are about a
    # minute at the CPU budgets; a resumed run continues bit for bit from the last one (`--resume`).
    checkpoint_every: int = 100
    # Forward passes in bf16 autocast ("auto": on CUDA only; losses are always combined in float32) and the
    # channels-last memory layout on CUDA (off by default: benchmarks/gpu_step.py measures whether it helps).
    precision: str = "auto"  # auto | fp32 | bf16
    channels_last: bool = False
    # Under torchrun: batch norm statistics over the global batch (every rank's shard, as nn.SyncBatchNorm) rather
    # than each rank's own shard (DistributedDataParallel's default). On, a run equals one process with the same
    # global batch up to rounding; off, it saves one small all-reduce per batch norm and forward.
    sync_bn: bool = False


# ---------------------------------------------------------------------------------------------------------
# Conversion between dataclasses and plain dicts, with errors that name the field.


def to_dict(cfg: Any) -> dict[str, Any]:
    return dataclasses.asdict(cfg)


def from_dict(cls: type[T], data: Any, where: str = "") -> T:
    """Build dataclass `cls` from a mapping, rejecting unknown keys and ill-typed values by field name."""
    if not isinstance(data, dict):
        raise MpnasError(f"config {where or 'root'}: expected a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]  # every config class is a dataclass
    unknown = sorted(set(data) - names)
    if unknown:
        raise MpnasError(f"config {where or 'root'}: unknown field(s) {', '.join(unknown)} (known: {', '.join(sorted(names))})")
    kwargs = {}
    for name, value in data.items():
        kwargs[name] = _coerce(hints[name], value, f"{where}.{name}" if where else name)
    return cls(**kwargs)


def _coerce(tp: Any, value: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(arg, value, where)
            except MpnasError as exc:
                errors.append(str(exc))
        raise MpnasError(errors[-1] if errors else f"config {where}: invalid value {value!r}")
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        if dataclasses.is_dataclass(value):
            return value
        return from_dict(tp, value, where)
    if origin is list:
        if not isinstance(value, (list, tuple)):
            raise MpnasError(f"config {where}: expected a list, got {value!r}")
        return [_coerce(args[0], v, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise MpnasError(f"config {where}: expected a mapping, got {value!r}")
        return {str(k): _coerce(args[1], v, f"{where}.{k}") for k, v in value.items()}
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise MpnasError(f"config {where}: expected true or false, got {value!r}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise MpnasError(f"config {where}: expected an integer, got {value!r}")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str) and _FLOAT.match(value.strip()):  # YAML 1.1 reads "1e-8" as a string
            return float(value)
        raise MpnasError(f"config {where}: expected a number, got {value!r}")
    if tp is str:
        if isinstance(value, str):
            return value
        raise MpnasError(f"config {where}: expected a string, got {value!r}")
    raise TypeError(f"unsupported config type {tp!r} at {where}")


def apply_overrides(cfg: T, overrides: list[str]) -> T:
    """Apply `a.b.c=value` overrides (value parsed as YAML) and re-validate the whole config."""
    data = to_dict(cfg)
    for item in overrides:
        if "=" not in item:
            raise MpnasError(f"override {item!r}: expected KEY=VALUE, e.g. train.steps=500")
        key, raw = item.split("=", 1)
        try:
            value = yaml.safe_load(raw)
        except yaml.YAMLError as exc:
            raise MpnasError(f"override {key}: cannot parse value {raw!r}: {yaml_problem(exc)}") from None
        node = data
        parts = key.strip().split(".")
        for part in parts[:-1]:
            if not isinstance(node.get(part), dict):
                raise MpnasError(f"override {key}: {part!r} is not a section of the config")
            node = node[part]
        if parts[-1] not in node:
            raise MpnasError(f"override {key}: unknown field {parts[-1]!r}")
        node[parts[-1]] = value
    return from_dict(type(cfg), data)


def yaml_problem(exc: yaml.YAMLError) -> str:
    """PyYAML's multi-line message (with a caret drawing) as one line: where, and what is wrong."""
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    where = f"at line {mark.line + 1} column {mark.column + 1}: " if mark is not None else ""
    context = getattr(exc, "context", None)
    return f"{where}{problem}" + (f" ({context})" if context else "")


def read_yaml_mapping(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise MpnasError(f"config file {path}: not found")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise MpnasError(f"config file {path}: invalid YAML {yaml_problem(exc)}") from None
    except UnicodeDecodeError:
        raise MpnasError(f"config file {path}: not UTF-8 text") from None
    if not isinstance(data, dict):
        raise MpnasError(f"config file {path}: expected a mapping at the top level")
    return data


def load_yaml(path: str | Path, cls: type[T] = RunConfig) -> T:  # type: ignore[assignment]
    path = Path(path)
    data = read_yaml_mapping(path)
    try:
        return from_dict(cls, data)
    except MpnasError as exc:
        raise MpnasError(f"config file {path}: {exc}") from None


def dump_yaml(cfg: Any) -> str:
    return yaml.safe_dump(to_dict(cfg), sort_keys=False)


# ---------------------------------------------------------------------------------------------------------
# Budgets: named presets of the numbers above. Figures measured on 2 CPU cores are in benchmarks/RESULTS.md.

BUDGETS = ("quick", "default", "long", "paper")


def budget_config(name: str) -> RunConfig:
    """`quick`: a smoke run (<= 2 min on 2 CPU cores); `default`: results worth reading (<= 15 min); `long`: for
    conclusive benches (<= 30 min); `paper`: the paper's settings (seed 002 §5), meant for GPUs."""
    if name == "quick":
        return RunConfig(
            budget="quick",
            space=SpaceConfig(preset="default", layers_per_block=2),
            search=SearchConfig(steps=40, batch_size=16, val_batch_size=32, log_every=4),
            train=TrainConfig(steps=120, batch_size=32, eval_every=60, log_every=10),
        )
    if name == "default":
        return RunConfig(
            budget="default",
            # 500 search steps: at 300 the supernet's sampled paths still scored near chance on most domains, so the
            # rewards were mostly the cost term (benchmarks/RESULTS.md); 500 keeps the whole run near 11 minutes.
            search=SearchConfig(steps=500, batch_size=32, val_batch_size=64, log_every=5),
            train=TrainConfig(steps=1000, batch_size=32, eval_every=200, log_every=20),
        )
    if name == "long":
        # 3000 training steps: at 1000 the 47-class glyph domain is still climbing steeply (it leaves chance only
        # after ~300 steps), so seed-to-seed spread in how early it takes off dominates the bench; at 3000 every
        # built-in domain has left chance within the first tenth of training (benchmarks/RESULTS.md). The search
        # gets 1200 steps, keeping it within 1.5x the training time.
        return RunConfig(
            budget="long",
            search=SearchConfig(steps=1200, batch_size=32, val_batch_size=64, log_every=10),
            train=TrainConfig(steps=3000, batch_size=32, eval_every=500, log_every=50),
        )
    if name == "paper":
        # Search: 90 epochs of the largest domain, batch 1024 per domain, RMSProp from 8e-3 with cosine decay,
        # controllers (Adam, 0.165) from 1/8 of the steps, T0 and beta as in the paper. Training: 360 epochs,
        # batch 416 per domain, RMSProp from 0.0325. Resolution 72 px (the paper's Visual Decathlon setting).
        return RunConfig(
            budget="paper",
            data=DataConfig(resolution=72),
            space=SpaceConfig(preset="paper"),
            # The paper's settings: every domain at the same batch, PyTorch's initialisation.
            model=ModelConfig(zero_init_residual=False),
            search=SearchConfig(
                steps=None, epochs=90, batch_size=1024, batch_per_class=0.0, val_batch_size=None,
                optim=OptimConfig(name="rmsprop", lr=8e-3, weight_decay=4e-5, grad_clip=None), controller_lr=0.165, beta=-0.07,
                log_every=50,
            ),
            train=TrainConfig(
                steps=None, epochs=360, batch_size=416, batch_per_class=0.0,
                optim=OptimConfig(name="rmsprop", lr=0.0325, weight_decay=4e-5, grad_clip=None),
                eval_every=2000, log_every=50,
            ),
        )
    raise MpnasError(f"budget {name!r} unknown; choose one of {', '.join(BUDGETS)}")


def merge_dicts(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in update.items():
        out[k] = merge_dicts(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) and k != "weights" else v
    return out


def resolve_config(
    budget: str = "default", config_file: str | Path | None = None, overrides: list[str] | None = None, **flags: Any
) -> RunConfig:
    """Budget preset, then a YAML file (any subset of fields), then CLI flags, then KEY=VALUE overrides."""
    data = to_dict(budget_config(budget))
    if config_file is not None:
        data = merge_dicts(data, read_yaml_mapping(Path(config_file)))
    for key, value in flags.items():
        if value is None:
            continue
        node = data
        parts = key.split(".")
        for part in parts[:-1]:
            node = node[part]
        node[parts[-1]] = value
    cfg = apply_overrides(from_dict(RunConfig, data), overrides or [])
    validate(cfg)
    return cfg


def validate(cfg: RunConfig) -> None:
    """Reject a bad value before any work starts, naming the field."""

    def need(ok: bool, field_: str, msg: str) -> None:
        if not ok:
            raise MpnasError(f"config {field_}: {msg}")

    def choice(value: str, options: tuple[str, ...], field_: str) -> None:
        need(value in options, field_, f"{value!r} is not one of {', '.join(options)}")

    choice(cfg.loss.kind, LOSS_KINDS, "loss.kind")
    choice(cfg.search.reward, REWARDS, "search.reward")
    choice(cfg.search.quality, QUALITIES, "search.quality")
    need(cfg.search.samples_per_step >= 1, "search.samples_per_step", f"must be >= 1, got {cfg.search.samples_per_step}")
    need(cfg.search.final_candidates >= 1, "search.final_candidates", f"must be >= 1, got {cfg.search.final_candidates}")
    need(cfg.search.final_batches >= 1, "search.final_batches", f"must be >= 1, got {cfg.search.final_batches}")
    need(cfg.search.shortlist >= 0, "search.shortlist", f"must be >= 0, got {cfg.search.shortlist}")
    need(cfg.search.shortlist <= max(cfg.search.final_candidates, 1) or cfg.search.shortlist == 0, "search.shortlist",
         f"needs search.final_candidates >= {cfg.search.shortlist} (the shortlist is cut from them), got "
         f"{cfg.search.final_candidates}")
    need(cfg.search.shortlist_steps >= 1, "search.shortlist_steps", f"must be >= 1, got {cfg.search.shortlist_steps}")
    need(not cfg.search.fair_sampling or cfg.search.strategy == "rl", "search.fair_sampling",
         "needs search.strategy=rl (the gradient strategy trains the paths its gates sample)")
    need(not cfg.search.sandwich or cfg.search.strategy == "rl", "search.sandwich",
         "needs search.strategy=rl (the gradient strategy trains the paths its gates sample)")
    need(not (cfg.search.sandwich and cfg.search.fair_sampling), "search.sandwich",
         "choose one of search.sandwich and search.fair_sampling: a fair set already trains every width")
    need(cfg.add_domain.params_budget > 0, "add_domain.params_budget",
         f"must be > 0 (a fraction of the trained model's parameters per domain), got {cfg.add_domain.params_budget}")
    choice(cfg.space.preset, SPACE_PRESETS, "space.preset")
    choice(cfg.budget, BUDGETS, "budget")
    need(cfg.data.resolution >= 8, "data.resolution", f"must be >= 8, got {cfg.data.resolution}")
    for stage in ("search", "train"):
        sc = getattr(cfg, stage)
        choice(sc.optim.name, OPTIMIZERS, f"{stage}.optim.name")
        need(sc.optim.lr > 0, f"{stage}.optim.lr", f"must be positive, got {sc.optim.lr}")
        need(sc.batch_size >= 1, f"{stage}.batch_size", f"must be >= 1, got {sc.batch_size}")
        need(sc.batch_per_class >= 0, f"{stage}.batch_per_class", f"must be >= 0, got {sc.batch_per_class}")
        need((sc.steps or 0) >= 1 or (sc.epochs or 0) > 0, f"{stage}.steps", "needs steps >= 1 or epochs > 0")
    need(0 <= cfg.search.rl_start < 1, "search.rl_start", f"must be in [0, 1), got {cfg.search.rl_start}")
    choice(cfg.search.gradient_ops, ("relaxed", "reinforce"), "search.gradient_ops")
    need(0 <= cfg.search.gradient_rl_fraction < 1, "search.gradient_rl_fraction", "must be in [0, 1)")
    need(cfg.search.strategy == "gradient" or (cfg.search.gradient_ops == "relaxed" and cfg.search.gradient_rl_fraction == 0),
         "search.gradient_ops", "search.gradient_ops and search.gradient_rl_fraction need search.strategy=gradient")
    need(0 <= cfg.search.baseline_momentum < 1, "search.baseline_momentum", "must be in [0, 1)")
    need(cfg.search.controller_lr > 0, "search.controller_lr", "must be positive")
    choice(cfg.precision, PRECISIONS, "precision")
    choice(cfg.model.init, INITS, "model.init")
    need(0 < cfg.model.bn_momentum <= 1, "model.bn_momentum", f"must be in (0, 1], got {cfg.model.bn_momentum}")
    choice(cfg.search.strategy, STRATEGIES, "search.strategy")
    need(cfg.search.tau_start > 0 and cfg.search.tau_end > 0, "search.tau_start/tau_end", "must be positive")
    need(cfg.search.arch_lr > 0, "search.arch_lr", f"must be positive, got {cfg.search.arch_lr}")
    need(cfg.search.entropy_weight >= 0, "search.entropy_weight", f"must be >= 0, got {cfg.search.entropy_weight}")
    need(cfg.train.finetune_steps >= 0, "train.finetune_steps", f"must be >= 0, got {cfg.train.finetune_steps}")
    need(cfg.train.finetune_lr_mult > 0, "train.finetune_lr_mult", "must be positive")
    need(cfg.train.recalibrate_batches >= 0, "train.recalibrate_batches", "must be >= 0")
    need(not cfg.train.from_supernet or cfg.train.bn_per_domain, "train.from_supernet",
         "needs train.bn_per_domain=true (the supernet keeps batch norm per domain)")
    mults = cfg.train.slim_multipliers
    need(bool(mults) and all(0 < m <= 1 for m in mults) and 1.0 in mults and len(set(mults)) == len(mults),
         "train.slim_multipliers", f"must be distinct values in (0, 1] that include 1.0, got {mults}")
    need(cfg.train.slim_random >= 0, "train.slim_random", f"must be >= 0, got {cfg.train.slim_random}")
    need(0 <= cfg.train.slim_distill <= 1, "train.slim_distill", f"must be in [0, 1], got {cfg.train.slim_distill}")
    need(0 <= cfg.train.slim_start < 1, "train.slim_start", f"must be in [0, 1), got {cfg.train.slim_start}")
    need(cfg.train.slim_profile >= 0, "train.slim_profile", f"must be >= 0, got {cfg.train.slim_profile}")
    need(not (cfg.train.slimmable and cfg.train.from_supernet), "train.slimmable",
         "cannot be combined with train.from_supernet (a single-shot model is only fine-tuned)")
    need(cfg.checkpoint_every >= 0, "checkpoint_every", f"must be >= 0 (0: only on a signal), got {cfg.checkpoint_every}")
    need(cfg.search.log_every >= 1 and cfg.train.log_every >= 1 and cfg.train.eval_every >= 1,
         "log_every/eval_every", "must be >= 1")
    need(0 <= cfg.train.label_smoothing < 1, "train.label_smoothing", "must be in [0, 1)")
    need(0 <= cfg.train.dropout < 1, "train.dropout", "must be in [0, 1)")
    need(min(cfg.loss.w, cfg.loss.w_min, cfg.loss.w_max) > 0, "loss.w", "w, w_min and w_max must be positive")
    need(all(v > 0 for v in cfg.loss.weights.values()), "loss.weights", "weights must be positive")
    need(0 < cfg.baselines.trl_ratio <= 1, "baselines.trl_ratio", "must be in (0, 1]")
    need(cfg.baselines.mrp_trials >= 1, "baselines.mrp_trials", "must be >= 1")
