import json
import shutil
import subprocess
import sys

import mlflow
import numpy as np
import pytest

from conftest import ROOT, SEED_ARTICLE, SEED_NAME, SENTENCES, read_rows, tiny_model, train_and_register
from speechacts import api, load_classifier, sources
from speechacts.classifier import load_model
from speechacts.errors import DataError, ModelError, TrackingError
from speechacts.labels import LABELS
from speechacts.store import sqlite_file


@pytest.fixture(scope="module")
def registered(tmp_path_factory):
    return train_and_register(tmp_path_factory.mktemp("registered"))


def test_every_source_of_the_registered_model_predicts_like_the_saved_directory(registered):
    expected = load_model(registered.model_dir).predict_proba(SENTENCES)
    result = registered.result
    for source in ("models:/speechacts-classifier@champion", "models:/speechacts-classifier/1",
                   f"runs:/{result.run_id}/model", str(registered.model_dir)):
        classifier = load_classifier(source, tracking_uri=registered.store)
        assert classifier.source == source
        assert np.array_equal(classifier.predict_proba(SENTENCES), expected), source


def test_default_source_is_the_champion_in_the_store_from_the_environment(registered, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", registered.store)
    classifier = load_classifier()
    assert classifier.source == "models:/speechacts-classifier@champion"
    assert classifier.model_dir.name == "model" and (classifier.model_dir / "speechacts.json").is_file()


def test_direct_sqlite_read_finds_the_same_model_as_mlflow(registered):
    for source in ("models:/speechacts-classifier@champion", "models:/speechacts-classifier/1"):
        direct = sources.sqlite_registry_root(sqlite_file(registered.store), source, registered.store)
        assert direct is not None and direct == sources.mlflow_root(source, registered.store)


def test_an_mlflow_model_folder_is_a_source_too(registered):
    root = sources.registry_root("models:/speechacts-classifier@champion", registered.store)
    assert load_classifier(root).model_dir == root / "artifacts" / "model"


def test_neither_import_nor_local_or_sqlite_loading_imports_mlflow(registered):
    script = f"""
import sys
import speechacts
assert not {{"mlflow", "sklearn", "torch", "numpy"}} & set(sys.modules), "import speechacts is not light"
for source in ({str(registered.model_dir)!r}, "models:/speechacts-classifier@champion"):
    speechacts.load_classifier(source, tracking_uri={registered.store!r}).predict(["Talks will resume."])
print(sorted(name for name in ("mlflow", "torch", "transformers") if name in sys.modules))
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "mlflow" not in out.stdout and "transformers" not in out.stdout


def test_article_sentences_keep_their_positions_and_left_out_lines_are_skipped(registered):
    classifier = load_classifier(registered.model_dir)
    predictions = classifier.predict_article(SEED_ARTICLE.read_text(encoding="utf-8"), SEED_NAME)
    labelled = [row["id"] for row in read_rows(ROOT / "data" / "seed_labels.csv") if row["source"] == SEED_NAME]
    left_out = {row["id"] for row in read_rows(ROOT / "data" / "seed_excluded.csv")}
    ids = [f"{SEED_NAME}:{p.position:03d}" for p in predictions]
    assert ids == labelled and len(left_out) == 5 and not left_out & set(ids)
    assert [p.kind for p in predictions[:3]] == ["headline", "standfirst", "body"]
    assert predictions[0].text == "US and Russia still at odds after talks over Ukraine tensions"
    assert [p.label for p in predictions] == classifier.model.predict([p.text for p in predictions])


def test_a_single_string_is_one_sentence_and_no_sentences_give_no_predictions(registered):
    classifier = load_classifier(registered.model_dir)
    assert [p.text for p in classifier.predict("Talks will resume.")] == ["Talks will resume."]
    assert classifier.predict([]) == []


@pytest.mark.parametrize("texts, message", [
    ([""], "sentence 1 is empty or only whitespace"),
    (["Talks will resume.", " \n\t"], "sentence 2 is empty or only whitespace"),
    (["Talks will resume.", None], r"sentence 2 is missing \(null\); give every sentence some text"),
    (["Talks will resume.", float("nan")], r"sentence 2 is missing \(null\)"),
    ([3], "sentence 1 is int 3, not a string"),
])
def test_empty_or_non_text_sentences_are_refused(registered, texts, message):
    with pytest.raises(DataError, match=message):
        load_classifier(registered.model_dir).predict(texts)


def test_an_empty_article_is_refused(registered):
    with pytest.raises(DataError, match="the article is empty"):
        load_classifier(registered.model_dir).predict_article("  \n\n ")


def test_missing_and_non_model_directories(tmp_path):
    with pytest.raises(ModelError, match=r"no-such-dir: model directory not found"):
        load_classifier(tmp_path / "no-such-dir")
    with pytest.raises(ModelError, match=r"not a speechacts model \(no speechacts.json\)"):
        load_classifier(tmp_path)
    with pytest.raises(ModelError, match=r"expected a model directory, runs:/RUN_ID/model, models:/NAME@ALIAS"):
        load_classifier("s3://bucket/model")


def test_a_model_saved_by_an_incompatible_version(registered, tmp_path):
    old = shutil.copytree(registered.model_dir, tmp_path / "old")
    meta = json.loads((old / "speechacts.json").read_text())
    meta["format_version"], meta["versions"]["speechacts"] = 0, "0.0.1"
    (old / "speechacts.json").write_text(json.dumps(meta))
    with pytest.raises(ModelError, match=r"saved with model format 0 by speechacts 0.0.1; this speechacts reads "
                                         r"format 1: retrain it or install the version that saved it"):
        load_classifier(old)


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_a_damaged_model_file_is_called_damaged(registered, tmp_path, damage):
    broken = shutil.copytree(registered.model_dir, tmp_path / "broken")
    arrays = broken / "baseline.safetensors"
    arrays.write_bytes(b"not a safetensors file" if damage == "garbage" else arrays.read_bytes()[:2000])
    with pytest.raises(ModelError, match=r"baseline.safetensors: the file is damaged or truncated \(SafetensorError: "
                                         r".*\); copy the model again or retrain it"):
        load_classifier(broken)


@pytest.mark.parametrize("source, message", [
    ("models:/speechacts-classifier@nope", "registered model 'speechacts-classifier' has no alias 'nope' in tracking "
                                           r"store .*; its aliases: @champion \(version 1\); its versions: 1"),
    ("models:/speechacts-classifier/9", "registered model 'speechacts-classifier' has no version 9 .*its versions: 1"),
    ("models:/other@champion", r"no registered model 'other' in tracking store .* \(it has 'speechacts-classifier'\)"),
    ("runs:/0123456789abcdef/model", "runs:/0123456789abcdef/model in tracking store .*: Run with id=0123456789abcdef "
                                     "not found"),
])
def test_unknown_alias_version_model_or_run(registered, source, message):
    with pytest.raises(ModelError, match=message):
        load_classifier(source, tracking_uri=registered.store)


def test_mlflow_route_gives_the_same_message_for_an_unknown_alias(registered):
    with pytest.raises(ModelError, match="has no alias 'nope' .*its aliases: @champion"):
        sources.mlflow_root("models:/speechacts-classifier@nope", registered.store)


def test_empty_and_missing_tracking_stores(tmp_path):
    missing = f"sqlite:///{tmp_path / 'missing.db'}"
    with pytest.raises(TrackingError, match=r"tracking store .*missing.db not found \(.* does not exist\); train and "
                                            "register a model with `speechacts experiment"):
        load_classifier(tracking_uri=missing)
    assert not (tmp_path / "missing.db").exists()
    (tmp_path / "blank.db").touch()
    with pytest.raises(TrackingError, match=r"tracking store .*blank.db is empty: it has no model registry"):
        load_classifier(tracking_uri=f"sqlite:///{tmp_path / 'blank.db'}")
    empty = f"sqlite:///{tmp_path / 'mlflow.db'}"
    mlflow.MlflowClient(empty).search_experiments()  # creates the tables, registers nothing
    with pytest.raises(ModelError, match=r"no registered model 'speechacts-classifier' in tracking store .* \(it has no "
                                         r"registered models\); train and register a model with"):
        load_classifier(tracking_uri=empty)


def test_predict_proba_of_no_texts_is_an_empty_array(registered):
    proba = load_classifier(registered.model_dir).predict_proba([])
    assert proba.shape == (0, len(LABELS))


def test_the_schema_the_direct_read_trusts_is_the_installed_mlflow_head():
    """When MLflow changes its schema, this fails: test the direct read on the new head, then pin it."""
    from alembic.script import ScriptDirectory
    from mlflow.store.db.utils import _get_alembic_config

    heads = set(ScriptDirectory.from_config(_get_alembic_config("sqlite://")).get_heads())
    assert heads <= sources.SCHEMA_VERSIONS


def copy_store(registered, folder, schema: str | None = None) -> str:
    """A copy of the registered store (same artifact locations), its schema version optionally changed."""
    import sqlite3

    db = folder / "copy.db"
    shutil.copy(sqlite_file(registered.store), db)
    if schema is not None:
        with sqlite3.connect(db) as con:
            con.execute("UPDATE alembic_version SET version_num = ?", (schema,))
    return f"sqlite:///{db}"


def test_an_unpinned_schema_version_goes_through_mlflow_and_is_logged(registered, tmp_path, caplog, monkeypatch):
    store = copy_store(registered, tmp_path, schema="ffffffffffff")
    asked = []
    monkeypatch.setattr(sources, "mlflow_root", lambda source, uri: asked.append((source, uri)) or registered.model_dir)
    with caplog.at_level("INFO", logger="speechacts.sources"):
        assert sources.registry_root("models:/speechacts-classifier@champion", store) == registered.model_dir
    assert asked == [("models:/speechacts-classifier@champion", store)]
    assert [r.getMessage() for r in caplog.records if r.name == "speechacts.sources"] == [
        "asking MLflow for models:/speechacts-classifier@champion: its schema version ffffffffffff is not one the "
        "direct read was tested on"]


def test_what_the_direct_read_does_not_find_goes_through_mlflow_and_is_logged(registered, caplog, monkeypatch):
    calls = []
    real = sources.mlflow_root
    monkeypatch.setattr(sources, "mlflow_root", lambda source, uri: calls.append(source) or real(source, uri))
    with caplog.at_level("INFO", logger="speechacts.sources"), pytest.raises(ModelError, match="has no alias 'nope'"):
        load_classifier("models:/speechacts-classifier@nope", tracking_uri=registered.store)
    assert calls == ["models:/speechacts-classifier@nope"]
    assert "asking MLflow for models:/speechacts-classifier@nope: the direct read did not find it" in caplog.text


def test_a_pinned_schema_is_read_directly_without_mlflow(registered, tmp_path, monkeypatch):
    store = copy_store(registered, tmp_path)
    monkeypatch.setattr(sources, "mlflow_root", lambda source, uri: pytest.fail("asked MLflow"))
    assert load_classifier("models:/speechacts-classifier@champion", tracking_uri=store).model_dir.is_dir()


def test_the_mlflow_route_reads_the_store_it_is_given_not_the_last_one_used(registered, tmp_path):
    empty = f"sqlite:///{tmp_path / 'empty.db'}"
    mlflow.MlflowClient(empty).search_experiments()
    mlflow.set_tracking_uri(registered.store)  # as a training job in the same process leaves it
    with pytest.raises(ModelError, match="no registered model 'speechacts-classifier' in tracking store sqlite:///"):
        sources.mlflow_root("models:/speechacts-classifier@champion", empty)


def test_min_confidence_marks_unsure_labels_without_changing_them(tmp_path):
    model, cfg = tiny_model("baseline")
    classifier = load_classifier(model.save(tmp_path / "m", config=cfg))
    plain = classifier.predict(SENTENCES)
    marked = classifier.predict(SENTENCES, min_confidence=0.999)
    assert [p.label for p in marked] == [p.label for p in plain]
    assert all(p.unsure for p in marked) and not any(p.unsure for p in plain)
    assert all(p.confidence == max(p.scores.values()) for p in plain)
    assert marked[0].to_dict()["unsure"] is True
    for bad in (1.5, -0.1, "0.5", True):
        with pytest.raises(api.DataError, match="min_confidence must be a probability between 0 and 1, got"):
            classifier.predict(SENTENCES, min_confidence=bad)


def test_predict_article_reads_each_sentence_with_its_context(tmp_path, monkeypatch):
    from speechacts.classifier import build
    from speechacts.config import BaselineModel

    texts = ['"That patience is over."'] * 12
    contexts = ["We will impose fines on every unlicensed farm, the minister said."] * 6 + ["Talks went well."] * 6
    labels = ["threat"] * 6 + ["assessment"] * 6
    cfg = BaselineModel(context="previous")
    model = build(cfg, seed=0).fit(texts + ["Talks resume.", "We reject it.", "Leave now.", "We offer help."],
                                   labels + ["assessment", "denial", "demand", "offer"],
                                   contexts + ["", "", "", ""])
    classifier = load_classifier(model.save(tmp_path / "m", config={"model": cfg.model_dump(mode="json")}))
    seen = []
    original = classifier.model.predict_proba
    monkeypatch.setattr(classifier.model, "predict_proba",
                        lambda t, c=None, prior=None: seen.append(c) or original(t, c, prior))
    article = ("Ministry sets out fines\n"
               "We will impose fines on every unlicensed farm, the minister said.\n"
               '"That patience is over."\n')
    predictions = classifier.predict_article(article)
    assert seen[-1] == ["", "Ministry sets out fines",
                        "We will impose fines on every unlicensed farm, the minister said."]
    assert predictions[2].label == "threat"


def test_many_articles_in_one_batch_label_as_each_alone(registered):
    classifier = load_classifier(registered.model_dir)
    articles = [(SEED_NAME, SEED_ARTICLE.read_text(encoding="utf-8")), ("short", "Talks fail\nRussia denies it. We will respond.")]
    together = classifier.predict_articles(articles)
    assert together == [classifier.predict_article(text, source) for source, text in articles]
    assert [p.position for p in together[1]] == [1, 2, 3]
    with pytest.raises(DataError, match="article 'short' is empty; give its text"):
        classifier.predict_articles([(SEED_NAME, articles[0][1]), ("short", " ")])


def test_registered_version_pins_an_alias(registered):
    assert sources.registered_version("models:/speechacts-classifier@champion", registered.store) == "1"
    assert sources.registered_version("models:/speechacts-classifier@latest", registered.store) == "1"
    assert sources.registered_version("models:/speechacts-classifier/7", registered.store) == "7"
    assert sources.registered_version("models:/speechacts-classifier@nope", registered.store) is None
    assert sources.registered_version(str(registered.model_dir), registered.store) is None
