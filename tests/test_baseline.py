"""The baseline's numpy featuriser and its plain-array model files."""

import json
import subprocess
import sys

import numpy as np
import pytest

from conftest import SENTENCES
from speechacts.classifier import build, load_model
from speechacts.config import BaselineModel
from speechacts.errors import ModelError
from speechacts.models import ngrams
from speechacts.models.baseline import ARRAYS_FILE, SETTINGS_FILE

TEXTS = ["Talks resume today.", "We reject it.", "Pay or else.", "Leave now!", "We offer help.",
         "The ministry denies the report.", "Withdraw your troops.", "We will retaliate.", "Aid is on offer.",
         "Prices rose."]
LABELS_OF = ["assessment", "denial", "threat", "demand", "offer"] * 2


def grams(counts: ngrams.Counts, row: int) -> list[float]:
    return sorted(counts.counts[counts.rows == row].tolist())


def test_character_ngrams_stay_inside_words_padded_with_a_space():
    # " ab " gives " a", "ab", "b " (n=2), " ab", "ab " (n=3), " ab " (n=4) and nothing of 5;
    # " c " gives " c", "c " and " c " (then stops); the second sentence is empty
    counts = ngrams.Stream(["AB  c", ""]).char_wb(2, 5, 20)
    assert grams(counts, 0) == [1.0] * 9
    assert grams(counts, 1) == []


def test_repeated_ngrams_are_counted_and_sentences_do_not_leak_into_each_other():
    counts = ngrams.Stream(["aa aa", "aa"]).char_wb(2, 2, 20)
    assert grams(counts, 0) == [2.0, 2.0, 2.0]  # " a", "aa", "a " twice each
    assert grams(counts, 1) == [1.0, 1.0, 1.0]


def test_word_ngrams_are_tokens_of_two_or_more_word_characters_and_their_pairs():
    counts = ngrams.Stream(["We reject it, I say: we REJECT it.", "x"]).words(1, 2, 20)
    # tokens: we reject it say we reject it (the "I" is too short): we, reject, it twice, say once;
    # bigrams pair neighbouring tokens: "we reject", "reject it" twice, "it say", "say we" once
    assert grams(counts, 0) == [1.0, 1.0, 1.0, 2.0, 2.0, 2.0, 2.0, 2.0]
    assert grams(counts, 1) == []


def test_accents_and_case_are_folded_before_hashing():
    stream = ngrams.Stream(["Café NAÏVE", "cafe naive"])
    for counts in (stream.char_wb(2, 5, 20), stream.words(1, 2, 20)):
        assert np.array_equal(counts.cols[counts.rows == 0], counts.cols[counts.rows == 1])


def test_the_counts_are_those_of_scikit_learn_hashing_vectorizer():
    """Same n-grams (the hash differs): per sentence, the same number of distinct n-grams and the same counts."""
    from sklearn.feature_extraction.text import HashingVectorizer

    texts = TEXTS + ["  Ünïcödé  text\twith ﬁ ligature and   spaces ", "", "a"]
    stream = ngrams.Stream(texts)
    for analyzer, ngram_range, counts in (("char_wb", (2, 5), stream.char_wb(2, 5, 22)),
                                          ("word", (1, 3), stream.words(1, 3, 22))):
        X = HashingVectorizer(analyzer=analyzer, ngram_range=ngram_range, n_features=2**22, alternate_sign=False,
                              norm=None, strip_accents="unicode").transform(texts)
        for i in range(len(texts)):
            assert grams(counts, i) == sorted(X[i].data.tolist()), (analyzer, texts[i])


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    model = build(BaselineModel(context="previous"), seed=0).fit(TEXTS, LABELS_OF, ["", "the talks failed"] * 5)
    return model, model.save(tmp_path_factory.mktemp("baseline") / "m")


def test_a_saved_model_predicts_the_same_probabilities_and_reads_its_context(saved):
    model, path = saved
    loaded = load_model(path)
    contexts = ["The talks failed."] * len(SENTENCES)
    assert loaded.context == "previous"
    assert np.allclose(loaded.predict_proba(SENTENCES, contexts), model.predict_proba(SENTENCES, contexts))
    assert not np.allclose(loaded.predict_proba(SENTENCES, contexts), loaded.predict_proba(SENTENCES))
    assert json.loads((path / SETTINGS_FILE).read_text())["classes"] == sorted(set(LABELS_OF))


def test_predictions_are_the_tfidf_rows_times_the_coefficients(saved):
    """The fast scoring (idf folded into float32 tables, norms applied to the sums) gives LogisticRegression's
    probabilities of the TF-IDF matrix built the plain way."""
    import scipy.sparse as sp

    from speechacts.labels import LABELS
    from speechacts.models.baseline import probabilities

    model, _ = saved
    contexts = ["talks failed"] * len(TEXTS)
    f, size = model.featuriser_, 2**model.featuriser_.bits
    X = sp.hstack([sp.csr_matrix((f.weighted(c, idf), (c.rows, c.cols)), shape=(c.n, size))
                   for c, idf in zip(f.counts(TEXTS, contexts), model.idf_)]).tocsr()
    expected = probabilities(X @ model.coef_.T + model.intercept_)
    got = model._predict_proba(TEXTS, contexts)[:, [LABELS.index(label) for label in model.labels_]]
    assert np.allclose(got, expected, atol=1e-6)


def test_large_batches_run_in_chunks_and_give_what_single_sentences_give(saved, monkeypatch):
    from speechacts.models import baseline

    model, _ = saved
    whole = model.predict_proba(TEXTS)
    monkeypatch.setattr(baseline, "CHUNK", 3)
    assert np.allclose(model.predict_proba(TEXTS), whole)
    assert np.allclose(np.vstack([model.predict_proba([t]) for t in TEXTS]), whole)


def test_loading_and_predicting_imports_no_scikit_learn_skops_torch_pandas_or_pydantic(saved):
    _, path = saved
    script = (f"import sys; from speechacts import load_classifier\n"
              f"load_classifier({str(path)!r}).predict(['Talks resume.'])\n"
              "print(sorted(m for m in ('sklearn', 'skops', 'torch', 'transformers', 'pandas', 'mlflow', 'scipy', "
              "'pydantic') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "[]", out.stderr


@pytest.mark.parametrize("damage, message", [
    (lambda p: (p / ARRAYS_FILE).unlink(), "baseline.safetensors: missing; the model directory is incomplete"),
    (lambda p: (p / SETTINGS_FILE).unlink(), "baseline.json: missing; the model directory is incomplete"),
    (lambda p: (p / SETTINGS_FILE).write_text("{"), r"baseline.json: unreadable \(Expecting"),
    (lambda p: (p / SETTINGS_FILE).write_text('{"classes": []}'), "baseline.json: no hash_version, word_ngram_range"),
    (lambda p: (p / ARRAYS_FILE).write_bytes(b"x" * 100), r"baseline.safetensors: the file is damaged or truncated "
                                                          r"\(SafetensorError"),
])
def test_a_damaged_or_missing_model_file_says_which_and_what_to_do(saved, tmp_path, damage, message):
    import shutil

    path = shutil.copytree(saved[1], tmp_path / "m")
    damage(path)
    with pytest.raises(ModelError, match=message):
        load_model(path)


def test_arrays_that_do_not_fit_the_settings_are_refused(saved, tmp_path):
    import shutil

    path = shutil.copytree(saved[1], tmp_path / "m")
    settings = json.loads((path / SETTINGS_FILE).read_text())
    (path / SETTINGS_FILE).write_text(json.dumps({**settings, "hash_bits": 12}))
    with pytest.raises(ModelError, match=r"array shapes .* do not fit baseline.json \(3 blocks of 2\*\*12 features, "
                                         r"5 classes\)"):
        load_model(path)
    (path / SETTINGS_FILE).write_text(json.dumps({**settings, "hash_version": 0}))
    with pytest.raises(ModelError, match="n-gram hash version 0, this speechacts hashes with version 1: retrain"):
        load_model(path)


def test_an_old_skops_baseline_is_refused_with_how_to_retrain(saved, tmp_path):
    import shutil

    path = shutil.copytree(saved[1], tmp_path / "m")
    for name in (ARRAYS_FILE, SETTINGS_FILE):
        (path / name).unlink()
    (path / "pipeline.skops").write_bytes(b"an old pipeline")
    with pytest.raises(ModelError, match=r"a baseline saved as a scikit-learn pipeline \(pipeline.skops\) by an older "
                                         r"speechacts; .* retrain it with `speechacts train configs/baseline.yaml`"):
        load_model(path)
