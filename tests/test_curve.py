import mlflow
import numpy as np
import pytest

from conftest import ROOT, tiny_overrides
from speechacts import curve, evaluation
from speechacts.cli import main
from speechacts.config import DataConfig, load_config
from speechacts.data import Row, select, validate
from speechacts.errors import DataError

RECIPE = ROOT / "configs/baseline.yaml"


def test_fractions_double_up_to_the_whole():
    assert curve.fractions(5) == [1 / 16, 1 / 8, 1 / 4, 1 / 2, 1]
    with pytest.raises(DataError, match="--points must be at least 2"):
        curve.fractions(1)


def test_samples_take_articles_whole_nest_and_stay_in_the_training_part(project):
    rows = select(validate(DataConfig()).train, DataConfig())
    folds = evaluation.make_folds([r.label for r in rows], [r.group for r in rows], 2, 1, 13)
    for fold in folds:
        samples = curve.nested_samples(rows, fold.train, curve.fractions(3), seed=13)
        assert set(samples[-1]) == set(fold.train)  # the last point is the whole training part
        for small, large in zip(samples, samples[1:]):
            assert set(small) < set(large)
        for sample in samples:
            assert not set(sample) & set(fold.test)
            kept = {rows[i].source for i in sample if rows[i].in_article}
            whole = {i for i in fold.train if rows[i].source in kept}
            assert whole <= set(sample)  # every sentence of a sampled article
        isolated = [sum(not rows[i].in_article for i in s) for s in samples]
        total = sum(not rows[i].in_article for i in fold.train)
        assert isolated == [round(total / 4), round(total / 2), total]


@pytest.mark.slow
def test_curve_on_the_tiny_project(project, store, capsys):
    assert main(["curve", str(RECIPE), "--points", "3", *tiny_overrides(store)]) == 0
    out = capsys.readouterr().out
    assert "scored by article_macro_f1" in out and "\ndoubling the data added " in out
    client = mlflow.MlflowClient(store)
    experiment = client.get_experiment_by_name("tests-curves")
    runs = client.search_runs([experiment.experiment_id])
    (parent,) = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert parent.data.tags["job"] == "learning_curve" and len(children) == 3
    assert {"plots/learning_curve.png"} <= {a.path for a in client.list_artifacts(parent.info.run_id, "plots")}
    history = client.get_metric_history(parent.info.run_id, "curve_train_sentences")
    sentences = [m.value for m in sorted(history, key=lambda m: m.step)]
    assert sentences == sorted(sentences) and len(sentences) == 3
    gain = parent.data.metrics["doubling_gain_points"]
    f1 = {m.step: m.value for m in client.get_metric_history(parent.info.run_id, "curve_article_macro_f1")}
    assert gain == pytest.approx(100 * (f1[2] - f1[1]))
    assert f"doubling the data added {gain:+.1f} points" in out
    # the last point is the train job's cross-validation: same folds, same data
    cfg = load_config(RECIPE, tiny_overrides(store))
    rows = select(validate(cfg.data).train, cfg.data)
    assert sentences[-1] == pytest.approx(np.mean([len(f.train) for f in evaluation.make_folds(
        [r.label for r in rows], [r.group for r in rows], 2, 1, cfg.seed)]))


def test_too_many_points_for_the_data(project, store, capsys):
    assert main(["curve", str(RECIPE), "--points", "7", *tiny_overrides(store)]) == 2
    assert ("error: --points 7: too many for this data: in fold 0, 1/64 and 1/32 of the training part are the same 10 "
            "sentences (one article and one isolated sentence at least); lower --points\n") == capsys.readouterr().err


def test_curve_needs_two_points(project, store, capsys):
    assert main(["curve", str(RECIPE), "--points", "1", *tiny_overrides(store)]) == 2
    assert capsys.readouterr().err == "error: --points must be at least 2 (a doubling needs two points), got 1\n"


def test_nested_samples_without_articles():
    rows = [Row(f"a{i}", "authored", "threat", "x") for i in range(8)]
    samples = curve.nested_samples(rows, np.arange(8), [0.25, 1.0], seed=0)
    assert [len(s) for s in samples] == [2, 8]
