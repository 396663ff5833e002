import io
import os
import shutil

import mlflow
import pandas as pd
import pytest

from conftest import FIXTURES, ROOT, SEED_NAME, tiny_authored, tiny_overrides, write_rows
from speechacts import evaluation, train
from speechacts.classifier import load_model
from speechacts.cli import main
from speechacts.config import load_config
from speechacts.errors import DataError, TrackingError
from speechacts.labels import LABELS

RECIPE = ROOT / "configs/baseline.yaml"


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One baseline job on the tiny corpus, into a temporary store; shared by the tests below."""
    folder = tmp_path_factory.mktemp("trained")
    shutil.copytree(ROOT / "seeds", folder / "seeds")
    for name in ("seed_labels.csv", "seed_excluded.csv"):
        shutil.copy(ROOT / "data" / name, folder / name)
    write_rows(folder / "authored.csv", tiny_authored())
    store = f"sqlite:///{folder / 'mlflow.db'}"
    overrides = tiny_overrides(store, f"data.train=[{folder / 'authored.csv'}]", f"data.test=[{folder / 'seed_labels.csv'}]",
                               f"data.excluded={folder / 'seed_excluded.csv'}", f"data.seeds_dir={folder / 'seeds'}",
                               f"data.articles_dir={FIXTURES / 'articles'}", f"data.sources_dir={FIXTURES / 'sources'}",
                               f"output_dir={folder / 'outputs'}")
    result = train.run(load_config(RECIPE, overrides))
    again = train.run(load_config(RECIPE, overrides))
    return store, result, again


def test_parent_run_has_params_tags_metrics_and_dataset(trained):
    store, result, _ = trained
    client = mlflow.MlflowClient(store)
    run = client.get_run(result.run_id)
    assert run.info.status == "FINISHED"
    assert run.data.params["model.C"] == "10.0" and run.data.params["evaluation.folds"] == "2"
    tags = run.data.tags
    assert tags["family"] == "baseline" and tags["recipe"] == "baseline"
    assert tags["git_commit"] and tags["version.scikit-learn"] and tags["folds_digest"]
    metrics = run.data.metrics
    for name in ("cv_macro_f1", "cv_macro_f1_ci_low", "cv_macro_f1_ci_high", "cv_accuracy", "cv_balanced_accuracy",
                 "cv_f1_threat", "cv_precision_offer", "cv_recall_denial", "seed_macro_f1", "seed_macro_f1_ci_low",
                 "ref_majority_cv_macro_f1", "ref_stratified_cv_macro_f1", "train_seconds"):
        assert name in metrics, name
    assert metrics["cv_macro_f1_ci_low"] <= metrics["cv_macro_f1"] <= metrics["cv_macro_f1_ci_high"]
    assert [d.dataset.name for d in run.inputs.dataset_inputs] == ["training", "seed-articles"]


def test_one_child_run_per_fold_with_the_same_metric_names(trained):
    store, result, _ = trained
    client = mlflow.MlflowClient(store)
    children = client.search_runs([client.get_run(result.run_id).info.experiment_id],
                                  filter_string=f"tags.mlflow.parentRunId = '{result.run_id}'")
    assert len(children) == 2
    assert all({"macro_f1", "accuracy", "f1_threat"} <= set(c.data.metrics) for c in children)


def test_artifacts(trained):
    store, result, _ = trained
    client = mlflow.MlflowClient(store)
    paths = {a.path for a in client.list_artifacts(result.run_id)}
    for sub in ("plots", "reports", "predictions"):
        paths |= {a.path for a in client.list_artifacts(result.run_id, sub)}
    assert {"config.yaml", "data_card.md", "folds.csv", "cv_scores.csv", "plots/cv_confusion_matrix.png",
            "plots/cv_per_label_f1.png", "plots/seed_confusion_matrix.png", "reports/cv_classification_report.json",
            "reports/seed_classification_report.json", "predictions/oof_predictions.csv",
            "predictions/likely_mislabelled.csv", "predictions/seed_predictions.csv",
            f"reports/{SEED_NAME}.html"} <= paths
    page = mlflow.artifacts.load_text(f"runs:/{result.run_id}/reports/{SEED_NAME}.html")
    assert page.count('<mark class="s act-') == 24 and "baseline (baseline)" in page


def test_out_of_fold_predictions_cover_every_sentence_with_probabilities(trained):
    _, result, _ = trained
    oof = pd.DataFrame(result.oof)
    assert len(oof) == 62 and oof["id"].is_unique
    assert set(oof["kind"]) == {"isolated", "headline", "standfirst", "body"}
    assert set(oof.columns) >= {"id", "text", "true", "predicted", "fold", "repeat", *[f"p_{x}" for x in LABELS]}
    assert oof[[f"p_{x}" for x in LABELS]].sum(axis=1).round(6).eq(1).all()


def test_same_seed_gives_identical_folds_and_predictions(trained):
    store, first, second = trained
    assert pd.DataFrame(first.oof).equals(pd.DataFrame(second.oof))
    client = mlflow.MlflowClient(store)
    digests = {client.get_run(r.run_id).data.tags["folds_digest"] for r in (first, second)}
    assert len(digests) == 1


def test_logged_model_loads_through_pyfunc_and_predicts_like_the_in_process_model(trained):
    _, result, _ = trained
    texts = ["The ministry rejected the report as baseless.", "Talks will resume in March, officials said."]
    served = mlflow.pyfunc.load_model(result.model_uri).predict(pd.DataFrame({"text": texts}))
    local = load_model(result.model_dir)
    assert list(served.columns) == ["label", *LABELS, "unsure"]
    assert list(served["label"]) == local.predict(texts)
    assert served[list(LABELS)].to_numpy() == pytest.approx(local.predict_proba(texts))


def test_final_model_is_registered(trained):
    store, result, again = trained
    assert (result.model_version, again.model_version) == ("1", "2")
    version = mlflow.MlflowClient(store).get_model_version("speechacts-classifier", "1")
    assert version.run_id == result.run_id


def test_a_failing_job_marks_its_run_failed_and_registers_nothing(project, store, monkeypatch):
    from speechacts.models.baseline import BaselineClassifier

    def broken_save(self, path):
        raise OSError("disk full")

    monkeypatch.setattr(BaselineClassifier, "_save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        train.run(load_config(RECIPE, tiny_overrides(store)))
    client = mlflow.MlflowClient(store)
    runs = client.search_runs([client.get_experiment_by_name("tests").experiment_id],
                              filter_string="attributes.status = 'FAILED'")
    assert len(runs) == 1
    assert client.search_registered_models() == []


@pytest.mark.parametrize("overrides, message", [
    (["data.train=[data/missing.csv]"], "data/missing.csv: data file not found"),
    (["data.topics=[no-such-topic]"], "no training rows left after filtering"),
    (["evaluation.folds=10"], r"evaluation.folds=10 needs at least 10 examples of every label, but these have "
                              r"fewer: demand \(9\)"),
])
def test_bad_data_for_training(project, store, overrides, message):
    with pytest.raises(DataError, match=message):
        train.run(load_config(RECIPE, tiny_overrides(store, *overrides)))


def test_unreachable_tracking_server(project):
    with pytest.raises(TrackingError, match=r"tracking server http://127.0.0.1:9 is unreachable"):
        train.run(load_config(RECIPE, tiny_overrides("http://127.0.0.1:9")))


def test_unwritable_tracking_store(project, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    uri = f"sqlite:///{blocker}/mlflow.db"
    with pytest.raises(TrackingError, match="is missing or not writable"):
        train.run(load_config(RECIPE, tiny_overrides(uri)))


def test_train_command_reports_errors_without_traceback(project, store, capsys):
    assert main(["train", str(RECIPE), *tiny_overrides(store, "model.family=forest")]) == 2
    assert "model.family: unknown family 'forest'" in capsys.readouterr().err
    assert main(["train", str(RECIPE), *tiny_overrides(store, "data.train=[nope.csv]")]) == 2
    assert "error: nope.csv: data file not found" in capsys.readouterr().err


def test_train_command_prints_a_line_per_fold_and_a_summary(project, store, capsys):
    assert main(["train", str(RECIPE), *tiny_overrides(store)]) == 0
    out = capsys.readouterr().out
    assert "repeat 0 fold 0: macro-F1" in out and "repeat 0 fold 1: macro-F1" in out
    assert "grouped by article" in out and "article macro-F1" in out
    assert "article sentences" in out and "isolated sentences" in out and "reference: assessment (articles)" in out
    assert "seed articles (real text)" in out
    assert os.path.isdir("outputs")


@pytest.mark.parametrize("family", ["embeddings", "transformer"])
def test_hugging_face_families_log_a_pyfunc_model_that_predicts_like_in_process(family, project, store, tiny_bert):
    recipe = ROOT / "configs" / f"{family}.yaml"
    extra = [f"model.pretrained={tiny_bert}", "model.max_length=32"]
    if family == "transformer":
        extra += ["model.epochs=1", "model.batch_size=8"]
    result = train.run(load_config(recipe, tiny_overrides(store, *extra)))
    texts = ["The ministry rejected the report as baseless.", "Talks will resume in March, officials said."]
    served = mlflow.pyfunc.load_model(result.model_uri).predict(pd.DataFrame({"text": texts}))
    local = load_model(result.model_dir)
    assert list(served.columns) == ["label", *LABELS, "unsure"]
    assert served[list(LABELS)].to_numpy() == pytest.approx(local.predict_proba(texts), abs=1e-6)
    run = mlflow.MlflowClient(store).get_run(result.run_id)
    assert run.data.tags["family"] == family and "cv_macro_f1" in run.data.metrics
    # the default recipe exports ONNX, checks it against torch, and the pyfunc runs on it
    assert run.data.metrics["onnx_fp32_label_agreement"] == 1.0 and "onnx_int8_label_agreement" in run.data.metrics
    assert local.runtime == "onnx"
    assert mlflow.pyfunc.load_model(result.model_uri).unwrap_python_model().model.runtime == "onnx"


def test_the_pyfunc_marks_unsure_labels_and_refuses_a_bad_threshold(trained):
    store, result, _ = trained
    mlflow.set_tracking_uri(store)
    texts = ["The ministry rejected the report as baseless.", "Talks will resume in March, officials said."]
    model = mlflow.pyfunc.load_model(result.model_uri)
    plain = model.predict(pd.DataFrame({"text": texts}))
    assert not plain["unsure"].any()
    strict = model.predict(pd.DataFrame({"text": texts}), params={"min_confidence": 0.999})
    assert strict["unsure"].all() and list(strict["label"]) == list(plain["label"])  # the label is kept
    with pytest.raises(Exception, match="min_confidence must be a probability between 0 and 1, got 2"):
        model.predict(pd.DataFrame({"text": texts}), params={"min_confidence": 2.0})


def test_the_pyfunc_reads_an_optional_context_column(project, store, tiny_bert):
    overrides = tiny_overrides(store, "model.context=previous", "tracking.registered_model=null")
    result = train.run(load_config(RECIPE, overrides))
    model = mlflow.pyfunc.load_model(result.model_uri)
    local = load_model(result.model_dir)
    texts = ['"That patience is over."'] * 2
    contexts = ["We will impose fines on every unlicensed farm, the minister said.", None]
    served = model.predict(pd.DataFrame({"text": texts, "context": contexts}))
    assert served[list(LABELS)].to_numpy() == pytest.approx(local.predict_proba(texts, [contexts[0], ""]))
    without = model.predict(pd.DataFrame({"text": texts}))
    assert without[list(LABELS)].to_numpy() == pytest.approx(local.predict_proba(texts))
    with pytest.raises(Exception, match="context 1 is a int, not a string"):
        model.predict(pd.DataFrame({"text": texts, "context": [1, 2]}))


@pytest.mark.slow
def test_repeats_refit_every_fold_on_new_splits_and_pool_all_fold_scores(project, store):
    result = train.run(load_config(RECIPE, tiny_overrides(store, "evaluation.repeats=2",
                                                          "tracking.registered_model=null")))
    assert len(result.fold_scores) == 4  # 2 folds x 2 repeats
    client = mlflow.MlflowClient(store)
    children = client.search_runs([client.get_run(result.run_id).info.experiment_id],
                                  filter_string=f"tags.mlflow.parentRunId = '{result.run_id}'")
    assert sorted((c.data.tags["repeat"], c.data.tags["fold"]) for c in children) == [
        ("0", "0"), ("0", "1"), ("1", "0"), ("1", "1")]
    oof = pd.DataFrame(result.oof)
    assert all(sorted(repeats) == [0, 1] for _, repeats in oof.groupby("id")["repeat"])
    held_out = {repeat: frozenset(frame.loc[frame["fold"] == 0, "id"]) for repeat, frame in oof.groupby("repeat")}
    assert held_out[0] != held_out[1]  # each repeat splits anew (seed + repeat)
    # the interval pools all four fold scores
    scores = [s["macro_f1"] for s in result.fold_scores]
    assert result.cv["macro_f1"] == pytest.approx(evaluation.corrected_interval(scores, 1 / 2, 0.95))
    assert len(set(scores)) > 1
    per_fold = mlflow.artifacts.load_text(f"runs:/{result.run_id}/cv_scores.csv")
    assert set(pd.read_csv(io.StringIO(per_fold)).query("model == 'baseline'")["repeat"]) == {0, 1}


def test_likely_mislabelled_lists_exactly_the_sentences_whose_label_disagrees_with_confident_predictions():
    # 8 sentences per label, scored over 2 repeats. Three are labelled wrongly: the model is confident in
    # another label. The denials are all scored low (0.3) but still as denials: a label the model is unsure
    # of everywhere, which a single global ranking would list first and confident learning's per-label
    # threshold does not flag.
    oof, flipped = [], {"s03": ("offer", 0.02), "s12": ("threat", 0.04), "s36": ("demand", 0.06)}
    for repeat in (0, 1):
        for k in range(40):
            true = LABELS[k // 8]
            given, p_given = flipped.get(f"s{k:02d}", (true, None))
            p = dict.fromkeys(LABELS, 0.05)
            if true == "denial":
                p = dict.fromkeys(LABELS, 0.175) | {"denial": 0.3}
            else:
                p[true] = 0.8
            if p_given is not None:  # surer of the true label than of any correctly labelled sentence
                p = dict.fromkeys(LABELS, (0.15 - p_given) / 3) | {true: 0.85, given: p_given}
            oof.append({"id": f"s{k:02d}", "text": f"sentence {k}", "true": given, "predicted": true,
                        "repeat": repeat, **{f"p_{label}": value for label, value in p.items()}})
    found = train.likely_mislabelled(oof)
    assert list(found["id"]) == ["s03", "s12", "s36"]  # the lowest probability for the given label first
    assert list(found["given"]) == ["offer", "threat", "demand"]
    assert list(found["predicted"]) == ["threat", "demand", "assessment"]
    assert found["p_given"].tolist() == pytest.approx([0.02, 0.04, 0.06])
    assert set(found.columns) == {"id", "text", "given", "p_given", "predicted"}


@pytest.mark.slow
def test_early_stopping_in_the_train_job_validates_on_whole_training_articles(project, store, tiny_bert, monkeypatch):
    from speechacts import evaluation

    calls = []
    real = evaluation.inner_split

    def spy(labels, groups, fraction, seed):
        fit_rows, val_rows = real(labels, groups, fraction, seed)
        calls.append((groups, fit_rows, val_rows))
        return fit_rows, val_rows

    monkeypatch.setattr(evaluation, "inner_split", spy)
    recipe = ROOT / "configs/transformer.yaml"
    extra = [f"model.pretrained={tiny_bert}", "model.max_length=32", "model.epochs=3", "model.batch_size=8",
             "model.early_stopping_patience=1", "model.validation_fraction=0.5", "tracking.registered_model=null"]
    result = train.run(load_config(recipe, tiny_overrides(store, *extra)))
    assert len(calls) == 3  # two folds and the final fit
    for groups, fit_rows, val_rows in calls:
        held = {groups[i] for i in val_rows}
        assert held and None not in held  # whole articles, never a sentence alone
        assert not held & {groups[i] for i in fit_rows}
    final_groups = calls[-1][0]
    assert len(final_groups) == len(result.oof) and sum(g is not None for g in final_groups) > 0
    history = mlflow.MlflowClient(store).search_runs(
        [mlflow.get_experiment_by_name("tests").experiment_id], filter_string="tags.fold = '0'")
    assert "best_epoch" in history[0].data.metrics
