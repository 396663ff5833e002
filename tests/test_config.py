from pathlib import Path

import pytest

from speechacts.cli import main
from speechacts.config import ConfigError, load_config

ROOT = Path(__file__).resolve().parents[1]
RECIPES = sorted((ROOT / "configs").glob("*.yaml"))


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: p.name)
def test_every_shipped_recipe_loads(recipe):
    cfg = load_config(recipe)
    assert cfg.name == recipe.stem
    assert cfg.model.family in ("baseline", "transformer", "embeddings")


def test_overrides_combine_with_the_file():
    cfg = load_config(ROOT / "configs/baseline.yaml", ["model.C=3", "evaluation.folds=10", "data.topics=[energy]"])
    assert cfg.model.C == 3.0
    assert cfg.evaluation.folds == 10
    assert cfg.data.topics == ["energy"]
    assert cfg.evaluation.repeats == load_config(ROOT / "configs/baseline.yaml").evaluation.repeats


def test_flat_params_use_dotted_keys():
    flat = load_config(ROOT / "configs/baseline.yaml").flat()
    assert flat["model.family"] == "baseline"
    assert "evaluation.folds" in flat


def write(tmp_path, text: str) -> Path:
    path = tmp_path / "recipe.yaml"
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize("text, overrides, message", [
    ("model: {family: baseline, Cee: 1}", [], "model.Cee: unknown key"),
    ("model: {family: baseline}\nevaluaton: {folds: 3}", [], "evaluaton: unknown key"),
    ("model: {family: baseline, C: lots}", [], "model.C: Input should be a valid number"),
    ("model: {family: baseline}\nevaluation: {folds: 1}", [], "evaluation.folds: Input should be greater than or equal to 2"),
    ("model: {family: forest}", [], "model.family: unknown family 'forest'; expected one of baseline, transformer, embeddings"),
    ("seed: 1", [], "model: missing required key"),
    ("model: {C: 3}", [], "model.family: missing required key; expected one of baseline, transformer, embeddings"),
    ("model: {family: baseline}\nevaluation: {folds: '5'}", [], "evaluation.folds: Input should be a valid integer "
                                                                "(got '5')"),
    ("model: {family: transformer, class_weighting: 'yes'}", [], "model.class_weighting: Input should be a valid "
                                                                 "boolean (got 'yes')"),
    ("model: {family: transformer, epochs: '2'}", [], "model.epochs: Input should be a valid number (got '2')"),
    ("model: {family: baseline, C: '10'}", [], "model.C: Input should be a valid number (got '10')"),
    ("model: {family: baseline, sublinear_tf: 1}", [], "model.sublinear_tf: Input should be a valid boolean (got 1)"),
    ("model: {family: baseline, word_ngram_range: ['1', 2]}", [], "model.word_ngram_range.0: Input should be a valid "
                                                                  "integer (got '1')"),
    ("model: {family: baseline}\ndata: {include_hard: 'no'}", [], "data.include_hard: Input should be a valid "
                                                                   "boolean (got 'no')"),
    ("model: {family: baseline}", ["evaluation.folds='5'"], "evaluation.folds: Input should be a valid integer"),
    ("model: {family: baseline, word_ngram_range: [3, 1]}", [], "word_ngram_range must be [low, high]"),
    ("model: {family: baseline}", ["model.epochs=3"], "model.epochs: unknown key"),
    ("model: {family: baseline}", ["evaluation.folds=many"], "evaluation.folds: Input should be a valid integer"),
    ("model: {family: transformer, learning_rate: -1}", [], "model.learning_rate: Input should be greater than 0"),
    ("model: {family: transformer, lr_scheduler_type: cosinus}", [], "model.lr_scheduler_type: Input should be "
                                                                     "'linear', 'cosine'"),
    ("model: {family: transformer, early_stopping_patience: 0}", [], "model.early_stopping_patience: Input should be "
                                                                     "greater than or equal to 1"),
    ("model: {family: transformer, validation_fraction: 0.8}", [], "model.validation_fraction: Input should be less "
                                                                   "than or equal to 0.5"),
    ("model: {family: transformer, ensemble_seeds: 0}", [], "model.ensemble_seeds: Input should be greater than or "
                                                            "equal to 1"),
    ("model: {family: transformer, seed: 1.5}", [], "model.seed: Input should be a valid integer"),
    ("model: {family: baseline}", ["model.ensemble_seeds=3"], "model.ensemble_seeds: unknown key"),
])
def test_bad_config_names_file_and_dotted_key(tmp_path, text, overrides, message):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as err:
        load_config(path, overrides)
    assert message in str(err.value)
    assert str(path) in str(err.value)


@pytest.mark.parametrize("text, message", [
    ("model: [unclosed", "not valid YAML"),
    ("- just\n- a list", "expected a mapping of keys at the top, got list"),
])
def test_unreadable_config_file(tmp_path, text, message):
    with pytest.raises(ConfigError, match=message):
        load_config(write(tmp_path, text))


def test_missing_config_file(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.yaml")


def test_numbers_paths_and_pairs_keep_their_natural_yaml_forms(tmp_path):
    cfg = load_config(write(tmp_path, "model: {family: baseline, C: 3, word_ngram_range: [1, 3]}\n"
                                      "data: {train: [a.csv], articles_dir: null}\noutput_dir: out"))
    assert cfg.model.C == 3.0 and cfg.model.word_ngram_range == (1, 3)
    assert cfg.data.train == [Path("a.csv")] and cfg.data.articles_dir is None and cfg.output_dir == Path("out")


def test_an_override_that_is_not_valid_yaml_is_one_error_line(capsys):
    with pytest.raises(ConfigError, match=r"override 'model.C=\[1,': the value is not valid YAML \(.*\); quote it "
                                          r"to give a string, e.g. model.C='\[1,'"):
        load_config(ROOT / "configs/baseline.yaml", ["model.C=[1,"])
    assert main(["config", str(ROOT / "configs/baseline.yaml"), "model.C=[1,"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: override 'model.C=[1,': the value is not valid YAML") and err.count("\n") == 1


@pytest.mark.parametrize("override", ["noequals", "=3", "model..C=3"])
def test_malformed_override(override):
    with pytest.raises(ConfigError, match="expected dotted.key=value"):
        load_config(ROOT / "configs/baseline.yaml", [override])


def test_override_into_a_value_is_refused():
    with pytest.raises(ConfigError, match="'family' is a value, not a section"):
        load_config(ROOT / "configs/baseline.yaml", ["model.family.x=1"])


def test_config_command_prints_the_resolved_config(capsys):
    assert main(["config", str(ROOT / "configs/baseline.yaml"), "model.C=2.5"]) == 0
    out = capsys.readouterr().out
    assert "C: 2.5" in out and "family: baseline" in out


def test_config_command_refuses_a_bad_key_with_exit_2(capsys):
    assert main(["config", str(ROOT / "configs/baseline.yaml"), "model.bogus=1"]) == 2
    assert "model.bogus: unknown key" in capsys.readouterr().err


@pytest.mark.parametrize("family", ["baseline", "transformer", "embeddings"])
def test_defaults_are_valid(family, tmp_path):
    # pydantic does not check defaults: every one must pass the schema's own bounds when written out
    # (the resolved config a run saves) and loaded again
    defaults = load_config(write(tmp_path, f"model: {{family: {family}}}"))
    reloaded = load_config(write(tmp_path, defaults.to_yaml()))
    assert reloaded == defaults
