import pytest

from mpnas.config import BUDGETS, RunConfig, apply_overrides, budget_config, dump_yaml, load_yaml, resolve_config
from mpnas.errors import MpnasError


def test_yaml_round_trip(tmp_path):
    cfg = budget_config("quick")
    (tmp_path / "c.yaml").write_text(dump_yaml(cfg))
    assert load_yaml(tmp_path / "c.yaml") == cfg


def test_overrides_parse_types_and_revalidate():
    cfg = apply_overrides(RunConfig(), ["train.steps=7", "loss.kind=x2", "train.optim.eps=1e-8", "data.domains=[a, b]"])
    assert cfg.train.steps == 7 and cfg.loss.kind == "x2" and cfg.train.optim.eps == 1e-8
    assert cfg.data.domains == ["a", "b"]
    with pytest.raises(MpnasError, match="train.steps: expected an integer"):
        apply_overrides(RunConfig(), ["train.steps=many"])
    with pytest.raises(MpnasError, match="unknown field 'stpes'"):
        apply_overrides(RunConfig(), ["train.stpes=3"])
    with pytest.raises(MpnasError, match="KEY=VALUE"):
        apply_overrides(RunConfig(), ["train.steps"])


def test_config_file_errors(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: {steps: [1, 2")
    with pytest.raises(MpnasError, match="invalid YAML"):
        resolve_config("quick", bad)
    bad.write_text("train:\n  learning_rate: 3\n")
    with pytest.raises(MpnasError, match="unknown field"):
        resolve_config("quick", bad)
    with pytest.raises(MpnasError, match="not found"):
        resolve_config("quick", tmp_path / "missing.yaml")


def test_precedence_budget_file_flags_overrides(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("train:\n  steps: 11\n  batch_size: 8\nseed: 3\n")
    cfg = resolve_config("quick", f, ["train.steps=12"], seed=4)
    assert cfg.budget == "quick" and cfg.search.steps == budget_config("quick").search.steps
    assert cfg.train.batch_size == 8 and cfg.train.steps == 12 and cfg.seed == 4


def test_budgets_exist_and_paper_uses_the_papers_settings():
    assert set(BUDGETS) == {"quick", "default", "long", "paper"}
    paper = budget_config("paper")
    assert paper.search.epochs == 90 and paper.train.epochs == 360
    assert paper.search.batch_size == 1024 and paper.train.batch_size == 416
    assert paper.search.optim.lr == 8e-3 and paper.train.optim.lr == 0.0325
    assert paper.search.rl_start == 0.125 and paper.data.resolution == 72 and paper.space.preset == "paper"
    with pytest.raises(MpnasError, match="budget 'huge' unknown"):
        budget_config("huge")


def test_search_quality_and_samples_are_validated_by_field():
    with pytest.raises(MpnasError, match="search.quality"):
        resolve_config("quick", overrides=["search.quality=loss"])
    with pytest.raises(MpnasError, match="search.samples_per_step"):
        resolve_config("quick", overrides=["search.samples_per_step=0"])


def test_the_gradient_strategys_options_are_validated_by_field():
    with pytest.raises(MpnasError, match="search.gradient_ops"):
        resolve_config("quick", overrides=["search.strategy=gradient", "search.gradient_ops=gates"])
    with pytest.raises(MpnasError, match="search.gradient_ops.*need search.strategy=gradient"):
        resolve_config("quick", overrides=["search.gradient_ops=reinforce"])  # the rl strategy has no gates
    with pytest.raises(MpnasError, match="search.gradient_rl_fraction"):
        resolve_config("quick", overrides=["search.strategy=gradient", "search.gradient_rl_fraction=1"])
    with pytest.raises(MpnasError, match="add_domain.params_budget"):
        resolve_config("quick", overrides=["add_domain.params_budget=0"])
    cfg = resolve_config("quick", overrides=["search.strategy=gradient", "search.gradient_ops=reinforce",
                                             "search.gradient_rl_fraction=0.25"])
    assert (cfg.search.gradient_ops, cfg.search.gradient_rl_fraction) == ("reinforce", 0.25)


def test_paper_budget_does_not_clip_gradients_and_long_trains_three_times_default():
    paper = budget_config("paper")
    assert paper.search.optim.grad_clip is None and paper.train.optim.grad_clip is None
    assert budget_config("default").train.optim.grad_clip == 5.0
    assert budget_config("long").train.steps == 3 * budget_config("default").train.steps


def test_stable_recipe_on_cpu_budgets_and_the_papers_settings_on_paper():
    """Issue 24's recipe (per-class batches, zero-init residual branches) for search and training alike, except in
    the `paper` budget, which keeps one batch for every domain and PyTorch's initialisation."""
    for budget in ("quick", "default", "long"):
        cfg = resolve_config(budget)
        assert cfg.model.zero_init_residual and cfg.train.batch_per_class == 2 and cfg.search.batch_per_class == 2
    paper = resolve_config("paper")
    assert not paper.model.zero_init_residual and paper.train.batch_per_class == 0 and paper.search.batch_per_class == 0
    with pytest.raises(MpnasError, match="model.init"):
        resolve_config("default", overrides=["model.init=xavier"])
    with pytest.raises(MpnasError, match="train.batch_per_class"):
        resolve_config("default", overrides=["train.batch_per_class=-1"])
