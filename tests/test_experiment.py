import re

import mlflow
import pytest

from conftest import ROOT, tiny_overrides
from speechacts import compare, experiment
from speechacts.cli import main
from speechacts.config import read_yaml
from speechacts.errors import ConfigError, TrackingError

BASELINE = ROOT / "configs/baseline.yaml"


def write_spec(path, runs: str, extra: str = "") -> str:
    path.write_text(f"name: tiny\nexperiment: tests\n{extra}runs:\n{runs}", encoding="utf-8")
    return str(path)


def test_experiment_runs_every_recipe_crowns_the_best_and_compares(project, store, capsys):
    spec = write_spec(project / "tiny.yaml", f"  - recipe: {BASELINE}\n    name: strong\n"
                                             f"  - recipe: {BASELINE}\n    name: weak\n    overrides: [model.C=0.001]\n")
    results = experiment.run(spec, tiny_overrides(store))
    assert [r.name for r in results] == ["strong", "weak"]
    best = max(results, key=lambda r: r.cv["article_macro_f1"][0])
    assert best.headline == best.cv["article_macro_f1"]
    client = mlflow.MlflowClient(store)
    assert str(client.get_model_version_by_alias("speechacts-classifier", "champion").version) == best.model_version
    out = capsys.readouterr().out
    assert "models:/speechacts-classifier@champion is now version" in out
    assert "article macro-F1 [95% CI]" in out and "reference:majority" in out and "reference:stratified" in out
    assert "reference:assessment" in out and "always answers 'assessment'" in out
    assert (project / "outputs" / "compare-tests.png").is_file()

    rows = compare.run("tests", tracking_uri=store)
    assert [r.name for r in rows][:2] == sorted(["strong", "weak"], key=lambda n: -next(
        r.cv["article_macro_f1"][0] for r in results if r.name == n))
    assert rows[0].diff is None and rows[1].diff is not None and 0 <= rows[1].p_value <= 1
    assert {r.family for r in rows} == {"baseline", "reference"}


def test_compare_on_a_missing_or_empty_store(project, store, capsys):
    assert main(["compare", "speechacts", "--tracking-uri", store]) == 2
    assert "mlflow.db not found" in capsys.readouterr().err
    assert not (project / "mlflow.db").exists()  # asking does not create a store
    mlflow.MlflowClient(store).search_experiments()  # now it exists, with no 'speechacts' experiment
    assert main(["compare", "speechacts", "--tracking-uri", store]) == 2
    assert "no experiment 'speechacts' in tracking store" in capsys.readouterr().err


@pytest.mark.parametrize("runs, extra, message", [
    ("  - recipe: configs/baseline.yaml\n    nme: x\n", "", "runs.0.nme: unknown key"),
    ("", "", "runs: Input should be a valid list"),
    (f"  - recipe: {BASELINE}\n  - recipe: {BASELINE}\n", "", "run names must differ, got ['baseline', 'baseline']"),
    (f"  - recipe: {BASELINE}\n    overrides: [model.bogus=1]\n", "", "model.bogus: unknown key"),
])
def test_bad_experiment_files(project, runs, extra, message):
    spec = write_spec(project / "bad.yaml", runs, extra)
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        experiment.configs(experiment.load_spec(spec), [])


def test_shipped_experiments_are_valid(monkeypatch):
    monkeypatch.chdir(ROOT)  # experiments name recipes relative to the project root
    for path in sorted((ROOT / "experiments").glob("*.yaml")):
        if "space" in read_yaml(path):  # a sweep file: tests/test_search_space.py
            continue
        spec = experiment.load_spec(path)
        assert path.read_text().startswith("# Question:"), path
        assert experiment.configs(spec, [])
    default = experiment.configs(experiment.load_spec(ROOT / "experiments/default.yaml"), [])
    assert {c.model.family for c in default} == {"baseline", "embeddings", "transformer"}
    # every family of the default experiment is scored on the same folds
    assert len({(c.seed, c.evaluation.model_dump_json(), c.data.model_dump_json()) for c in default}) == 1
    assert default[0].evaluation.folds == 3


def test_compare_unknown_experiment(project, store):
    mlflow.MlflowClient(store).create_experiment("other")  # a new store also holds MLflow's "Default"
    message = (f"no experiment 'missing' in tracking store {store}; it has: other, Default. "
               "Train something first (`make run`)")
    with pytest.raises(TrackingError, match=f"^{re.escape(message)}$"):
        compare.run("missing", tracking_uri=store)


@pytest.mark.slow
def test_compare_pairs_only_runs_on_the_same_folds(project, store, capsys):
    from speechacts import train
    from speechacts.config import load_config

    for name, seed in (("first", 13), ("second", 14)):  # another seed: other folds, another digest
        train.run(load_config(BASELINE, tiny_overrides(store, f"name={name}", f"seed={seed}",
                                                       "tracking.registered_model=null")))
    capsys.readouterr()
    rows = compare.run("tests", tracking_uri=store)
    best, other = rows[0], rows[1]
    assert {best.name, other.name} == {"first", "second"} and best.digest != other.digest
    assert other.diff is None and other.p_value is None
    references = rows[2:]
    assert len(references) == 6  # three references on each run's folds
    for row in references:
        assert (row.diff is not None) == (row.digest == best.digest), row
    line = next(line for line in capsys.readouterr().out.splitlines() if line.startswith(other.name))
    assert line.split()[-1] == "n/a"
