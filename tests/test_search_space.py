"""The sweep file: its space of settings, validated once, with one-line errors."""

import optuna
import pytest

from conftest import ROOT
from speechacts import search_space
from speechacts.errors import ConfigError

BASELINE = ROOT / "configs/baseline.yaml"
TINY_SPACE = "space:\n  model.C: {type: float, low: 0.01, high: 100, log: true}\n"


def write_sweep(path, body: str = TINY_SPACE, head: str = f"recipe: {BASELINE}\nexperiment: tests-sweep\n") -> str:
    path.write_text(head + body, encoding="utf-8")
    return str(path)


@pytest.mark.parametrize("body, message", [
    ("", "invalid sweep: space: missing required key"),
    ("space: {}\n", "invalid sweep: space: Dictionary should have at least 1 item after validation, not 0"),
    ("space:\n  model.C: 3\n", "space.model.C: expected a range such as {type: float, low: 0.1, high: 10}, got 3"),
    ("space:\n  model.C: {low: 1, high: 2}\n", "space.model.C: missing type: float, int or categorical"),
    ("space:\n  model.C: {type: normal, low: 1, high: 2}\n",
     "space.model.C.type: unknown type 'normal'; expected float, int or categorical"),
    ("space:\n  model.C: {type: float, low: 10, high: 1}\n", "space.model.C: low 10.0 is above high 1.0"),
    ("space:\n  model.C: {type: float, low: 0, high: 1, log: true}\n", "space.model.C: log: true needs low > 0, got 0.0"),
    ("space:\n  model.C: {type: float, low: 1, high: 9, log: true, step: 2}\n",
     "space.model.C: log: true and step cannot be combined"),
    ("space:\n  model.C: {type: float, low: 1}\n", "space.model.C.high: missing required key"),
    ("space:\n  model.C: {type: float, low: 1, high: 2, lo: 0}\n", "space.model.C.lo: unknown key"),
    ("space:\n  model.solver: {type: categorical, choices: []}\n",
     "space.model.solver.choices: List should have at least 1 item after validation, not 0"),
    ("space:\n  model.solver: {type: categorical, choices: [lbfgs, lbfgs]}\n",
     "space.model.solver: choices repeat a value: ['lbfgs', 'lbfgs']"),
    (TINY_SPACE + "trails: 3\n", "invalid sweep: trails: unknown key"),
    (TINY_SPACE + "pruner: hyperband\n", "pruner: Input should be 'median' or 'none'"),
    ("space:\n  model.Cee: {type: float, low: 0.1, high: 1}\n", "space.model.Cee=0.1: model.Cee: unknown key"),
    ("space:\n  model.C: {type: float, low: 0, high: 1}\n",
     "space.model.C=0.0: model.C: Input should be greater than 0 (got 0.0)"),
    ("space:\n  model.word_ngram_range: {type: categorical, choices: [[1, 2], [3, 1]]}\n",
     "space.model.word_ngram_range=[3, 1]: model: Value error, word_ngram_range must be [low, high] with "
     "1 <= low <= high, got [3, 1]"),
    ("space:\n  model.epochs: {type: int, low: 1, high: 3}\n", "space.model.epochs=1: model.epochs: unknown key"),
])
def test_bad_sweep_files_get_one_line_errors(tmp_path, body, message):
    path = write_sweep(tmp_path / "bad.yaml", body)
    with pytest.raises(ConfigError) as caught:
        spec = search_space.load_spec(path)
        search_space.check_space(path, spec, [])
    assert str(caught.value).startswith(f"{path}: ") and message in str(caught.value)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize("head, message", [
    ("recipe: configs/nope.yaml\nexperiment: x\n", "recipe configs/nope.yaml: configs/nope.yaml: config file not found"),
    (f"recipe: {BASELINE}\n", "invalid sweep: experiment: missing required key"),
    (f"recipe: {BASELINE}\nexperiment: x\noverrides: [model.bogus=1]\n", "model.bogus: unknown key"),
])
def test_bad_recipe_of_a_sweep(tmp_path, head, message):
    path = write_sweep(tmp_path / "bad.yaml", head=head)
    with pytest.raises(ConfigError, match=message.replace(".", r"\.")):
        search_space.check_space(path, search_space.load_spec(path), [])


def test_choices_of_any_yaml_value_reach_the_config_as_written(tmp_path):
    spec = search_space.load_spec(write_sweep(tmp_path / "s.yaml", "space:\n  model.word_ngram_range: {type: categorical, "
                                                          "choices: [[1, 1], [1, 3]]}\n  model.class_weight: "
                                                          "{type: categorical, choices: [null, balanced]}\n"))
    study = optuna.create_study(direction="maximize")
    trial = study.ask()
    values = {key: search_space.suggest(trial, key, param) for key, param in spec.space.items()}
    assert values["model.word_ngram_range"] in ([1, 1], [1, 3]) and values["model.class_weight"] in (None, "balanced")
    cfg = search_space.trial_config(spec, values, [], "t")
    assert list(cfg.model.word_ngram_range) == values["model.word_ngram_range"]
    assert cfg.model.class_weight == values["model.class_weight"] and cfg.tracking.registered_model is None


def test_shipped_sweep_files_are_valid(monkeypatch):
    monkeypatch.chdir(ROOT)
    paths = [p for p in sorted((ROOT / "experiments").glob("*.yaml")) if "space" in search_space.read_yaml(p)]
    assert paths
    for path in paths:
        assert path.read_text().startswith("# Question:"), path
        search_space.check_space(path, search_space.load_spec(path), [])
