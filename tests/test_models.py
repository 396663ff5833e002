"""Every model family: fit, predict, save -> load -> identical predictions; the Hugging Face
families on tiny randomly initialised BERTs built here from a config (no download)."""

from __future__ import annotations

import json
import shutil
import typing

import numpy as np
import pytest

from conftest import ROOT, tiny_authored
from speechacts import load_classifier
from speechacts.classifier import Classifier, build, load_model, read_meta
from speechacts.config import BaselineModel, EmbeddingsModel, ModelConfig, TransformerModel, validate
from speechacts.errors import ModelError
from speechacts.labels import ID2LABEL, LABELS
from speechacts.models import FAMILIES, family_class

ROWS = tiny_authored()
TEXTS = [r["text"] for r in ROWS]
LABELS_OF = [r["label"] for r in ROWS]
PROBE = ["The ministry rejected the report as baseless.", "Both sides agreed to meet again in March."]


def model_config(family: str, tiny_bert: str):
    if family == "baseline":
        return BaselineModel()
    if family == "embeddings":
        return EmbeddingsModel(pretrained=tiny_bert, max_length=32)
    return TransformerModel(pretrained=tiny_bert, epochs=2, batch_size=8, max_length=32, learning_rate=1e-3,
                            device="cpu")


@pytest.mark.parametrize("family", ["baseline", "embeddings", "transformer"])
def test_fit_predict_save_load_gives_identical_predictions(family, tiny_bert, tmp_path):
    """The one save -> load round trip, through the public load_classifier (which calls load_model)."""
    cfg = model_config(family, tiny_bert)
    model = build(cfg, seed=3).fit(TEXTS, LABELS_OF)
    proba = model.predict_proba(PROBE)
    assert proba.shape == (2, len(LABELS))
    assert np.allclose(proba.sum(axis=1), 1)
    classifier = load_classifier(model.save(tmp_path / "model", config={"model": cfg.model_dump(mode="json")}))
    assert type(classifier.model) is type(model) and classifier.family == family
    assert np.allclose(classifier.predict_proba(PROBE), proba, rtol=0, atol=1e-6)
    predictions = classifier.predict(PROBE)
    assert [p.text for p in predictions] == PROBE
    assert [p.label for p in predictions] == model.predict(PROBE)
    assert np.allclose([list(p.scores.values()) for p in predictions], proba, rtol=0, atol=1e-6)
    assert all(list(p.scores) == list(LABELS) for p in predictions)
    meta = read_meta(tmp_path / "model")
    assert meta["family"] == family and meta["labels"] == list(LABELS)
    assert meta["versions"]["scikit-learn"]


class FixedScores(Classifier):
    """A family whose scores are given, so predict's choice of label can be checked by hand."""

    def __init__(self, proba):
        self.proba = np.asarray(proba, dtype=float)

    def _predict_proba(self, texts, contexts=None):
        return self.proba[: len(texts)]


def test_predict_answers_the_label_with_the_highest_probability():
    # columns: threat, demand, denial, offer, assessment; a tie goes to the first label in that order
    model = FixedScores([[0.1, 0.6, 0.1, 0.1, 0.1], [0.0, 0.1, 0.1, 0.1, 0.7], [0.5, 0.0, 0.0, 0.0, 0.5],
                         [0.1, 0.1, 0.1, 0.6, 0.1]])
    assert model.predict(["a", "b", "c", "d"]) == ["demand", "assessment", "threat", "offer"]


def test_transformer_saves_safetensors_with_label_maps(tiny_bert, tmp_path):
    cfg = model_config("transformer", tiny_bert)
    build(cfg, seed=0).fit(TEXTS, LABELS_OF).save(tmp_path / "m", config={"model": cfg.model_dump(mode="json")})
    files = {p.name for p in (tmp_path / "m" / "hf").iterdir()}
    assert "model.safetensors" in files and "tokenizer.json" in files
    assert not any(name.endswith((".bin", ".pt", ".pkl")) for name in files)
    saved = json.loads((tmp_path / "m" / "hf" / "config.json").read_text())
    assert {int(k): v for k, v in saved["id2label"].items()} == ID2LABEL
    assert saved["label2id"] == {label: i for i, label in ID2LABEL.items()}


def test_transformer_training_is_reproducible_on_cpu(tiny_bert):
    cfg = model_config("transformer", tiny_bert)
    first = build(cfg, seed=5).fit(TEXTS, LABELS_OF).predict_proba(PROBE)
    again = build(cfg, seed=5).fit(TEXTS, LABELS_OF).predict_proba(PROBE)
    other = build(cfg, seed=6).fit(TEXTS, LABELS_OF).predict_proba(PROBE)
    assert np.array_equal(first, again)
    assert not np.array_equal(first, other)


def test_transformer_logs_loss_and_validation_metrics_per_epoch(tiny_bert, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    calls = []
    cfg = model_config("transformer", tiny_bert)
    build(cfg, seed=0).fit(TEXTS[:20], LABELS_OF[:20], eval_set=(TEXTS[20:], LABELS_OF[20:]),
                           log_metrics=lambda metrics, step: calls.append((step, metrics)))
    assert [step for step, m in calls if "train_loss" in m] == [1, 2]
    assert [step for step, m in calls if "val_macro_f1" in m] == [1, 2]
    assert "epoch 2/2: train loss" in capsys.readouterr().out
    assert list(tmp_path.iterdir()) == []  # no checkpoints left behind


def test_long_input_is_truncated_with_a_warning(tiny_bert):
    model = build(model_config("transformer", tiny_bert), seed=0).fit(TEXTS, LABELS_OF)
    with pytest.warns(UserWarning, match=r"1 text\(s\) longer than the model's maximum of 32 tokens were truncated"):
        proba = model.predict_proba(["short one", " ".join(["negotiations"] * 100)])
    assert proba.shape == (2, len(LABELS))


def test_embeddings_encode_each_sentence_once(tiny_bert):
    model = build(model_config("embeddings", tiny_bert), seed=0).fit(TEXTS, LABELS_OF)
    assert set(TEXTS) <= set(model.encoder_.cache)
    cached = len(model.encoder_.cache)
    model.predict_proba(TEXTS[:5])
    assert len(model.encoder_.cache) == cached


def test_missing_pretrained_directory_is_a_clear_error(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelError, match="a directory without config.json is not a transformers model"):
        build(TransformerModel(pretrained=str(tmp_path / "empty")), seed=0).fit(TEXTS, LABELS_OF)


def test_model_from_another_format_version_is_refused(tmp_path):
    build(BaselineModel(), seed=0).fit(TEXTS, LABELS_OF).save(tmp_path / "m")
    meta = json.loads((tmp_path / "m" / "speechacts.json").read_text())
    meta["format_version"] = 99
    (tmp_path / "m" / "speechacts.json").write_text(json.dumps(meta))
    with pytest.raises(ModelError, match="saved with model format 99 .* this speechacts reads format 1"):
        load_model(tmp_path / "m")


def test_missing_and_foreign_model_directories(tmp_path):
    with pytest.raises(ModelError, match="model directory not found"):
        load_model(tmp_path / "nowhere")
    shutil.copytree(ROOT / "configs", tmp_path / "configs")
    with pytest.raises(ModelError, match=r"not a speechacts model \(no speechacts.json\)"):
        load_model(tmp_path / "configs")


@pytest.mark.slow
def test_fine_tunes_the_real_packaged_minilm_for_a_few_steps():
    cfg = TransformerModel(epochs=1, batch_size=8, max_length=32, device="cpu")
    model = build(cfg, seed=0).fit(TEXTS[:16], LABELS_OF[:16])
    assert model.model_.config.num_hidden_layers == 6
    assert model.predict_proba(PROBE).shape == (2, len(LABELS))


# Context: the same sentence, labelled by what came before it.
CONTEXT_TEXTS = ['"That patience is over."'] * 12 + ['"This is as far as we go."'] * 12
CONTEXTS = (["We will impose tariffs if they keep dumping steel, the minister said."] * 6
            + ["The minister thanked the mediators for their patience in the talks."] * 6) * 2
CONTEXT_LABELS = (["threat"] * 6 + ["assessment"] * 6) * 2


@pytest.mark.parametrize("family", ["baseline", "embeddings", "transformer"])
def test_a_model_with_context_reads_it_and_still_labels_bare_sentences(family, tiny_bert, tmp_path):
    cfg = model_config(family, tiny_bert).model_copy(update={"context": "previous"})
    if family == "transformer":
        cfg = cfg.model_copy(update={"epochs": 8, "learning_rate": 3e-3, "max_length": 48})
    model = build(cfg, seed=0).fit(CONTEXT_TEXTS, CONTEXT_LABELS, CONTEXTS)
    with_threat = model.predict_proba(CONTEXT_TEXTS[:1], CONTEXTS[:1])
    with_calm = model.predict_proba(CONTEXT_TEXTS[:1], CONTEXTS[6:7])
    assert not np.allclose(with_threat, with_calm)  # the context changes what the model says
    if family != "transformer":  # linear heads separate this perfectly; a tiny random BERT only moves
        assert model.predict(CONTEXT_TEXTS[:1], CONTEXTS[:1]) == ["threat"]
        assert model.predict(CONTEXT_TEXTS[:1], CONTEXTS[6:7]) == ["assessment"]
    assert model.predict_proba(PROBE).shape == (2, len(LABELS))  # no context: read as empty
    model.save(tmp_path / "m", config={"model": cfg.model_dump(mode="json")})
    loaded = load_model(tmp_path / "m")
    assert loaded.context == "previous"
    assert np.allclose(loaded.predict_proba(CONTEXT_TEXTS[:1], CONTEXTS[:1]), with_threat, atol=1e-6)
    with pytest.raises(ModelError, match="got 1 texts but 2 contexts; give one context per text"):
        loaded.predict_proba(CONTEXT_TEXTS[:1], CONTEXTS[:2])


def test_transformer_encodes_sentence_and_context_as_a_text_pair(tiny_bert):
    from transformers import AutoTokenizer

    from speechacts.models.hf import length_batches

    tokenizer = AutoTokenizer.from_pretrained(tiny_bert)
    [(index, batch)] = list(length_batches(tokenizer, ["He said so."], 8, 32, ["Talks failed."]))
    ids = batch["input_ids"][0].tolist()
    assert ids.count(tokenizer.sep_token_id) == 2  # [CLS] sentence [SEP] context [SEP]
    assert tokenizer.decode(ids, skip_special_tokens=True) == "he said so. talks failed."
    if "token_type_ids" in batch:
        assert set(batch["token_type_ids"][0].tolist()) == {0, 1}
    [(_, alone)] = list(length_batches(tokenizer, ["He said so."], 8, 32))
    assert alone["input_ids"][0].tolist().count(tokenizer.sep_token_id) == 1


def test_a_loaded_embeddings_model_keeps_no_cache_and_a_training_cache_is_bounded(tiny_bert, tmp_path):
    from speechacts.models.embeddings import Encoder

    cfg = model_config("embeddings", tiny_bert)
    model = build(cfg, seed=0).fit(TEXTS, LABELS_OF)
    loaded = load_model(model.save(tmp_path / "m", config={"model": cfg.model_dump(mode="json")}))
    distinct = [f"Delegation {i} said talks would resume." for i in range(300)]
    proba = loaded.predict_proba(distinct)
    assert len(loaded.encoder_.cache) == 0
    bounded = Encoder(tiny_bert, 32, 16, "cpu", cache_size=50)
    vectors = bounded.encode(distinct)
    assert len(bounded.cache) == 50 and list(bounded.cache) == distinct[-50:]
    assert np.allclose(bounded.encode(distinct[:3] + distinct[-3:]), vectors[[0, 1, 2, -3, -2, -1]], atol=1e-6)
    assert np.allclose(loaded.predict_proba(distinct), proba)


@pytest.mark.parametrize("family", ["baseline", "embeddings", "transformer"])
def test_a_model_saved_without_a_config_loads(family, tiny_bert, tmp_path):
    model = build(model_config(family, tiny_bert), seed=0).fit(TEXTS, LABELS_OF)
    loaded = load_model(model.save(tmp_path / "m"))
    assert np.allclose(loaded.predict_proba(PROBE), model.predict_proba(PROBE), atol=1e-6)


def test_the_embeddings_head_is_saved_as_arrays_and_gives_scikit_learns_probabilities(tiny_bert, tmp_path):
    from sklearn.linear_model import LogisticRegression

    from speechacts.models.embeddings import LinearHead

    model = build(model_config("embeddings", tiny_bert), seed=0).fit(TEXTS, LABELS_OF)
    saved = json.loads((model.save(tmp_path / "m") / "head.json").read_text())
    assert set(saved) == {"classes", "coef", "intercept"} and not (tmp_path / "m" / "head.skops").exists()
    rng = np.random.default_rng(0)
    features = rng.normal(size=(40, 6))
    for labels in (list(LABELS) * 8, ["threat", "offer"] * 20):
        fitted = LogisticRegression().fit(features, labels)
        head = LinearHead.from_sklearn(fitted).predict_proba(features)
        columns = [LABELS.index(label) for label in fitted.classes_]
        assert head[:, columns] == pytest.approx(fitted.predict_proba(features), abs=1e-12)
        assert head.sum(axis=1) == pytest.approx(1.0)


def test_a_damaged_embeddings_head_is_one_clear_error(tiny_bert, tmp_path):
    saved = build(model_config("embeddings", tiny_bert), seed=0).fit(TEXTS, LABELS_OF).save(tmp_path / "m")
    (saved / "head.json").write_text('{"classes": ["threat", "maybe"], "coef": [[1.0], [2.0]], "intercept": [0, 0]}')
    with pytest.raises(ModelError, match="head.json: classes \\['threat', 'maybe'\\] or array shapes do not fit"):
        load_model(saved)


def test_saving_replaces_a_directory_whole_and_a_failed_save_leaves_nothing(tmp_path, monkeypatch):
    from speechacts.models.baseline import BaselineClassifier

    model = build(BaselineModel(), seed=0).fit(TEXTS, LABELS_OF)
    target = tmp_path / "m"
    target.mkdir()
    (target / "stale.txt").write_text("from an older model")
    model.save(target)
    assert sorted(p.name for p in target.iterdir()) == ["baseline.json", "baseline.safetensors", "postprocess.json",
                                                          "speechacts.json"]

    def broken(self, path):
        (path / "baseline.safetensors").write_bytes(b"half")
        raise OSError("disk full")

    monkeypatch.setattr(BaselineClassifier, "_save", broken)
    with pytest.raises(OSError, match="disk full"):
        model.save(tmp_path / "new")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]


def test_pickled_weights_are_refused_before_loading(tiny_bert, tmp_path, capsys):
    import torch

    from speechacts.cli import main

    cfg = model_config("transformer", tiny_bert)
    model = build(cfg, seed=0).fit(TEXTS, LABELS_OF)
    saved = model.save(tmp_path / "m")
    torch.save(model.model_.state_dict(), saved / "hf" / "pytorch_model.bin")
    (saved / "hf" / "model.safetensors").unlink()
    with pytest.raises(ModelError, match=r"hf: no model.safetensors; it holds pytorch_model.bin, which speechacts "
                                         "does not load, since unpickling can run code"):
        load_model(saved)
    assert main(["predict", "--model", str(saved), "Talks resume."]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "no model.safetensors" in err


def broken_meta(tmp_path, tiny_bert, family: str, change) -> str:
    model = build(model_config(family, tiny_bert), seed=0).fit(TEXTS, LABELS_OF)
    saved = model.save(tmp_path / "m")
    meta = json.loads((saved / "speechacts.json").read_text())
    (saved / "speechacts.json").write_text(json.dumps(change(meta)))
    return str(saved)


@pytest.mark.parametrize("family, change, message", [
    ("baseline", lambda meta: [meta], r"speechacts.json: expected a JSON object with format_version, family, labels "
                                      "and config, got a list"),
    ("baseline", lambda meta: {k: v for k, v in meta.items() if k != "family"},
     r"speechacts.json: no family; expected one of baseline, transformer, embeddings"),
    ("baseline", lambda meta: {**meta, "config": "none"}, "speechacts.json: config must be an object, got str"),
    ("transformer", lambda meta: {**meta, "config": {}}, r"speechacts.json: no model config \(config.model\), which "
                                                         "the transformer family needs to load"),
    ("embeddings", lambda meta: {k: v for k, v in meta.items() if k != "config"},
     r"speechacts.json: no model config \(config.model\), which the embeddings family needs"),
    ("embeddings", lambda meta: {**meta, "config": {"model": {**meta["config"]["model"], "max_length": "64"}}},
     "speechacts.json: config.model.max_length: Input should be a valid integer"),
])
def test_damaged_model_metadata_is_one_clear_error(tmp_path, tiny_bert, capsys, family, change, message):
    from speechacts.cli import main

    saved = broken_meta(tmp_path, tiny_bert, family, change)
    with pytest.raises(ModelError, match=message):
        load_model(saved)
    assert main(["predict", "--model", saved, "Talks resume."]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err


def test_the_config_schema_and_the_registry_name_the_same_families():
    schemas = typing.get_args(typing.get_args(ModelConfig)[0])
    assert sorted(schema.model_fields["family"].default for schema in schemas) == sorted(FAMILIES)


@pytest.mark.parametrize("family", FAMILIES)
def test_each_registered_family_builds_from_its_config_section(family):
    schema = validate({"name": "x", "model": {"family": family}}, origin="test").model
    assert family_class(family).family == schema.family == family


def test_an_unknown_family_is_refused_by_name():
    with pytest.raises(ModelError, match="unknown model family 'forest'; expected one of baseline, transformer, "
                                         "embeddings"):
        family_class("forest")


def test_transformer_class_weights_are_balanced_and_zero_for_an_absent_label():
    from speechacts.models.transformer import class_weights

    # ids 0..4 = threat, demand, denial, offer, assessment; n / (labels present * count)
    assert class_weights([0, 0, 1, 2, 3, 4, 4, 4]) == pytest.approx([0.8, 1.6, 1.6, 1.6, 8 / 15])
    assert class_weights([0, 0, 1, 1, 1, 4]) == pytest.approx([1.0, 2 / 3, 0.0, 0.0, 2.0])


def test_transformer_lr_schedule_is_the_configured_one(tiny_bert, monkeypatch):
    import transformers

    seen = []
    original = transformers.Trainer.create_scheduler

    def spy(trainer, num_training_steps, optimizer=None):
        scheduler = original(trainer, num_training_steps, optimizer)
        seen.append((trainer.args.lr_scheduler_type, trainer.args.get_warmup_steps(num_training_steps),
                     [group["lr"] for group in trainer.optimizer.param_groups]))
        return scheduler

    monkeypatch.setattr(transformers.Trainer, "create_scheduler", spy)
    cfg = model_config("transformer", tiny_bert).model_copy(update={"lr_scheduler_type": "cosine", "epochs": 1})
    model = build(cfg, seed=0).fit(TEXTS, LABELS_OF)
    assert model.model_ is not None
    assert str(seen[0][0]) in ("cosine", "SchedulerType.COSINE")
    assert seen[0][1] == 1  # warmup_ratio 0.1 of 4 steps (30 rows, batch 8), rounded up: a ratio, not 0 steps


def test_early_stopping_holds_out_whole_articles_and_keeps_the_best_epoch(tiny_bert, monkeypatch, capsys):
    from speechacts.evaluation import inner_split

    articles = [f"article-{i % 6}" if i % 3 else None for i in range(len(TEXTS))]
    fit_rows, val_rows = inner_split(LABELS_OF, articles, 0.2, seed=0)
    assert sorted([*fit_rows, *val_rows]) == list(range(len(TEXTS)))
    held = {articles[i] for i in val_rows}
    assert None not in held and len(held) == 1  # one article of six (fraction 0.2 -> 5 splits), whole
    assert all(articles[i] not in held for i in fit_rows)
    # a learning rate of 0 leaves the weights as initialised: validation macro-F1 never improves
    # after epoch 1, so patience 1 stops at epoch 2 of 20
    cfg = model_config("transformer", tiny_bert).model_copy(update={
        "epochs": 20, "learning_rate": 1e-12, "early_stopping_patience": 1, "validation_fraction": 0.2})
    calls = []
    build(cfg, seed=0).fit(TEXTS, LABELS_OF, groups=articles, log_metrics=lambda m, step=None: calls.append(m))
    assert "early stopping: best epoch 1 of 2 trained" in capsys.readouterr().out
    assert {"best_epoch": 1.0, "epochs_trained": 2.0} in calls
    assert sum("val_macro_f1" in m for m in calls) == 2


def test_early_stopping_needs_two_articles_to_hold_one_out(tiny_bert):
    from speechacts.errors import DataError

    cfg = model_config("transformer", tiny_bert).model_copy(update={"early_stopping_patience": 1})
    with pytest.raises(DataError, match="early stopping holds out whole articles for validation, but the training "
                                        "set has 1; set model.early_stopping_patience=null"):
        build(cfg, seed=0).fit(TEXTS, LABELS_OF, groups=["one"] * len(TEXTS))


def test_an_ensemble_averages_its_seeds_and_saves_and_loads_every_member(tiny_bert, tmp_path):
    cfg = model_config("transformer", tiny_bert).model_copy(update={"ensemble_seeds": 2, "epochs": 1})
    model = build(cfg, seed=4).fit(TEXTS, LABELS_OF)
    assert len(model.members_) == 1
    alone = model_config("transformer", tiny_bert).model_copy(update={"epochs": 1})
    four = build(alone, seed=4).fit(TEXTS, LABELS_OF).predict_proba(PROBE)
    five = build(alone, seed=5).fit(TEXTS, LABELS_OF).predict_proba(PROBE)
    proba = model.predict_proba(PROBE)
    assert np.allclose(proba, (four + five) / 2, atol=1e-6)
    model.save(tmp_path / "m", config={"model": cfg.model_dump(mode="json")})
    assert (tmp_path / "m" / "hf_seed1" / "model.safetensors").is_file()
    assert np.allclose(load_model(tmp_path / "m").predict_proba(PROBE), proba, atol=1e-6)
    shutil.rmtree(tmp_path / "m" / "hf_seed1")
    with pytest.raises(ModelError, match="hf_seed1: missing; model.ensemble_seeds=2"):
        load_model(tmp_path / "m")


def test_model_seed_varies_the_model_and_not_the_run_seed(tiny_bert):
    cfg = model_config("transformer", tiny_bert).model_copy(update={"epochs": 1, "seed": 7})
    assert build(cfg, seed=1).seed == build(cfg, seed=2).seed == 7
    assert build(cfg.model_copy(update={"seed": None}), seed=2).seed == 2
