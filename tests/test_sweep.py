"""Sweeps with Optuna: the sweep file, the study store, trials as MLflow runs, the best recipe."""

import sys

import mlflow
import optuna
import pytest

from conftest import ROOT, tiny_overrides
from speechacts import search_space, sweep, train
from speechacts.cli import main
from speechacts.config import load_config
from speechacts.errors import ConfigError, SweepError

BASELINE = ROOT / "configs/baseline.yaml"
TINY_SPACE = "space:\n  model.C: {type: float, low: 0.01, high: 100, log: true}\n"


def write_sweep(path, body: str = TINY_SPACE, head: str = f"recipe: {BASELINE}\nexperiment: tests-sweep\n") -> str:
    path.write_text(head + body, encoding="utf-8")
    return str(path)


def test_experiment_and_sweep_files_are_told_apart(project, capsys):
    assert main(["sweep", str(ROOT / "experiments/default.yaml")]) == 2
    assert "an experiment file (it lists runs:), not a sweep; run `speechacts experiment" in capsys.readouterr().err
    assert main(["experiment", str(ROOT / "experiments/baseline_sweep.yaml")]) == 2
    assert "a sweep file (it declares a space:), not an experiment; run `speechacts sweep" in capsys.readouterr().err


@pytest.mark.parametrize("args, message", [
    (["--storage", "not a url"], "study store not a url: ArgumentError: Could not parse SQLAlchemy URL"),
    (["--storage", "postgresql+nodriver://u:secret@localhost/db"], "study store postgresql+nodriver://u:***@localhost/db"),
    (["--workers", "0"], "--workers and --trials must be at least 1, got 0 and None"),
    (["--trials", "0"], "--workers and --trials must be at least 1, got 1 and 0"),
])
def test_bad_sweep_options(project, store, capsys, args, message):
    path = write_sweep(project / "s.yaml")
    assert main(["sweep", path, *tiny_overrides(store), *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and err.count("\n") == 1, err
    assert "secret" not in err


def test_without_optuna_the_sweep_says_what_to_install(project, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "optuna", None)
    assert main(["sweep", write_sweep(project / "s.yaml")]) == 2
    assert capsys.readouterr().err == "error: speechacts sweep needs Optuna: pip install 'speechacts[sweep]'\n"


def test_under_torchrun_the_sweep_is_refused(project, monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(ConfigError, match="speechacts sweep starts its own worker processes"):
        sweep.run(write_sweep(project / "s.yaml"))


def test_a_study_made_with_another_space_is_refused(tmp_path):
    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    first = search_space.load_spec(write_sweep(tmp_path / "s.yaml"))
    sweep.open_study(first, url)
    assert sweep.open_study(first, url).user_attrs["space"]  # the same space opens again
    other = search_space.load_spec(write_sweep(tmp_path / "s.yaml", "space:\n  model.C: {type: float, low: 1, high: 2}\n"))
    with pytest.raises(SweepError, match="study 's' in sqlite:///.* was made with another space"):
        sweep.open_study(other, url)


@pytest.mark.slow
def test_a_pruned_trial_ends_its_runs_killed(project, store):
    """Each fold's score reaches the pruner (families without epochs: at step fold * 1000); a pruned
    trial's MLflow runs end KILLED and its Optuna trial PRUNED."""
    path = write_sweep(project / "s.yaml")
    spec = search_space.load_spec(path)
    study = optuna.create_study(direction="maximize", pruner=optuna.pruners.ThresholdPruner(lower=2.0))
    mlflow.set_tracking_uri(store)
    study.optimize(sweep.objective(spec, tiny_overrides(store), parent_run_id="p" * 32), n_trials=1)
    trial = study.trials[0]
    assert trial.state == optuna.trial.TrialState.PRUNED and list(trial.intermediate_values) == [0]
    client = mlflow.MlflowClient(store)
    runs = client.search_runs([client.get_experiment_by_name("tests").experiment_id])
    assert [r.info.status for r in runs] == ["KILLED", "KILLED"]  # the trial's run and its first fold's
    trial_run = next(r for r in runs if r.data.tags.get("sweep_trial") == "0")
    assert trial_run.data.tags["mlflow.parentRunId"] == "p" * 32


@pytest.mark.slow
def test_the_transformer_reports_every_epoch_of_every_fold(project, store, tiny_bert):
    heard = []
    extra = [f"model.pretrained={tiny_bert}", "model.max_length=32", "model.epochs=2", "model.batch_size=8"]
    train.run(load_config(ROOT / "configs/transformer.yaml", tiny_overrides(store, *extra)),
              progress=lambda fold, epoch, value: heard.append((fold, epoch, value)))
    assert [(fold, epoch) for fold, epoch, _ in heard] == [(0, 1), (0, 2), (1, 1), (1, 2)]
    assert all(0 <= value <= 1 for *_, value in heard)


@pytest.mark.slow
def test_two_workers_share_one_study_and_write_a_best_recipe_that_loads(project, store, capsys):
    path = write_sweep(project / "tiny_sweep.yaml", TINY_SPACE + "trials: 4\nstartup_trials: 2\n")
    result = sweep.run(path, tiny_overrides(store), workers=2)

    study = optuna.load_study(study_name="tiny_sweep", storage=f"sqlite:///{project / 'optuna.db'}")
    trials = study.trials
    assert sorted(t.number for t in trials) == [0, 1, 2, 3]  # 4 trials in all, shared by the 2 workers
    assert len({t.params["model.C"] for t in trials}) == 4  # each worker samples its own points
    complete = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert complete and {t.state.name for t in trials} <= {"COMPLETE", "PRUNED"}  # the median pruner may stop some
    assert len({t.user_attrs["mlflow_run_id"] for t in complete}) == len(complete)

    client = mlflow.MlflowClient(store)
    parent = client.get_run(result.run_id)
    assert parent.info.status == "FINISHED" and parent.data.tags["sweep"] == "tiny_sweep"
    assert parent.data.params["space.model.C"] == "float in [0.01, 100.0] log"
    runs = client.search_runs([parent.info.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{result.run_id}'")
    assert sorted(r.data.tags["sweep_trial"] for r in runs) == ["0", "1", "2", "3"]  # one MLflow run per trial
    by_trial = {r.data.tags["sweep_trial"]: r for r in runs}
    for t in trials:
        run = by_trial[str(t.number)]
        assert run.info.status == ("FINISHED" if t in complete else "KILLED")
        assert run.data.params["model.C"] == str(t.params["model.C"])
        if t in complete:
            assert run.info.run_id == t.user_attrs["mlflow_run_id"]
            assert run.data.metrics["cv_article_macro_f1"] == pytest.approx(t.value)
    assert parent.data.metrics["best_cv_article_macro_f1"] == pytest.approx(study.best_value) == result.best_value
    assert client.search_registered_models() == []  # trials register nothing

    assert result.best_recipe.resolve() == (project / "outputs/sweeps/tiny_sweep/best.yaml").resolve()
    best = load_config(result.best_recipe)
    assert best.model.C == study.best_params["model.C"] and best.name == "tiny_sweep-best"
    assert best.tracking.registered_model == "speechacts-classifier"
    capsys.readouterr()
    assert main(["config", str(result.best_recipe)]) == 0
    assert f"C: {study.best_params['model.C']}" in capsys.readouterr().out

    again = sweep.run(path, tiny_overrides(store), trials=1)  # the same command adds trials to the same study
    assert again.run_id == result.run_id
    assert len(optuna.load_study(study_name="tiny_sweep", storage=f"sqlite:///{project / 'optuna.db'}").trials) == 5
    assert client.get_run(result.run_id).info.status == "FINISHED"
