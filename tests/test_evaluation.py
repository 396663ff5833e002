import numpy as np
import pytest
from sklearn.metrics import accuracy_score, balanced_accuracy_score, f1_score, precision_recall_fscore_support

from speechacts import evaluation
from speechacts.errors import DataError
from speechacts.labels import LABELS

# Hand-made: 'denial' is absent from the truth and predicted once; 'offer' is never predicted.
TRUE = ["threat", "threat", "demand", "demand", "offer", "assessment", "assessment", "assessment"]
PRED = ["threat", "demand", "demand", "demand", "denial", "assessment", "threat", "assessment"]


def test_scores_equal_scikit_learn_on_a_hand_made_case():
    got = evaluation.scores(TRUE, PRED)
    labels = list(LABELS)
    p, r, f, _ = precision_recall_fscore_support(TRUE, PRED, labels=labels, zero_division=0)
    assert got["macro_f1"] == pytest.approx(f1_score(TRUE, PRED, labels=labels, average="macro", zero_division=0))
    assert got["accuracy"] == pytest.approx(accuracy_score(TRUE, PRED))
    with pytest.warns(UserWarning):  # scikit-learn warns that 'denial' is predicted but absent
        assert got["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(TRUE, PRED))
    for i, label in enumerate(labels):
        assert got[f"precision_{label}"] == pytest.approx(p[i])
        assert got[f"recall_{label}"] == pytest.approx(r[i])
        assert got[f"f1_{label}"] == pytest.approx(f[i])
    # threat P=R=1/2, demand P=2/3 R=1, assessment P=1 R=2/3, denial and offer 0
    assert got["macro_f1"] == pytest.approx((0.5 + 0.8 + 0 + 0 + 0.8) / 5)


def test_a_fold_with_a_single_label_does_not_crash():
    got = evaluation.scores(["offer", "offer"], ["offer", "denial"])
    assert got["accuracy"] == 0.5 and got["f1_threat"] == 0.0


def labels(n_per_label=10):
    return [label for label in LABELS for _ in range(n_per_label)]


def singletons(y):
    return [str(i) for i in range(len(y))]


def articles(n_articles=12, size=8, seed=0):
    """Labels and groups of n articles: mostly assessments, a few acts each, like reporting."""
    rng = np.random.default_rng(seed)
    y, g = [], []
    for a in range(n_articles):
        for _ in range(size):
            y.append(str(rng.choice(LABELS, p=[0.1, 0.1, 0.1, 0.1, 0.6])))
            g.append(f"article-{a}")
    return y, g


def test_folds_are_identical_for_the_same_seed_and_differ_for_another():
    y, g = articles()
    a = evaluation.make_folds(y, g, 3, 2, seed=7)
    b = evaluation.make_folds(y, g, 3, 2, seed=7)
    c = evaluation.make_folds(y, g, 3, 2, seed=8)
    ids = [str(i) for i in range(len(y))]
    assert evaluation.folds_digest(ids, a) == evaluation.folds_digest(ids, b) != evaluation.folds_digest(ids, c)
    assert all((x.test == y.test).all() for x, y in zip(a, b))


def test_no_article_is_split_across_folds_and_isolated_sentences_spread():
    y, g = articles()
    iso = labels(4)  # 20 isolated sentences, each its own group
    y, g = y + iso, g + [f"isolated-{i}" for i in range(len(iso))]
    folds = evaluation.make_folds(y, g, 4, 2, seed=0)
    groups = np.asarray(g)
    for f in folds:
        assert not set(groups[f.test]) & set(groups[f.train])  # an article is wholly in or out
        assert any(str(x).startswith("isolated") for x in groups[f.test])
    for repeat in (0, 1):
        held = np.concatenate([f.test for f in folds if f.repeat == repeat])
        assert sorted(held) == list(range(len(y)))  # every row held out once per repeat
    first = [set(groups[f.test]) for f in folds if f.repeat == 0]
    second = [set(groups[f.test]) for f in folds if f.repeat == 1]
    assert first != second  # a repeat reshuffles the articles


def test_folds_are_stratified_and_cover_every_row_once_per_repeat():
    y = labels()
    folds = evaluation.make_folds(y, singletons(y), 5, 2, seed=0)
    assert len(folds) == 10
    for repeat in (0, 1):
        held = np.concatenate([f.test for f in folds if f.repeat == repeat])
        assert sorted(held) == list(range(50))
    assert all(len(f.test) == 10 for f in folds)
    assert all(sorted(np.asarray(y)[f.test]) == sorted(LABELS * 2) for f in folds)


def test_a_label_with_fewer_examples_than_folds_is_refused():
    y = labels(10)[:-8]  # 'assessment' keeps 2
    with pytest.raises(DataError, match=r"evaluation.folds=5 needs at least 5 examples of every label, "
                                        r"but these have fewer: assessment \(2\); lower evaluation.folds or add data"):
        evaluation.make_folds(y, singletons(y), 5, 1, seed=0)


def test_fewer_articles_than_folds_is_refused():
    y, g = articles(n_articles=2, size=30)
    with pytest.raises(DataError, match=r"evaluation.folds=3 needs at least 3 articles or isolated sentences, got 2"):
        evaluation.make_folds(y, g, 3, 1, seed=0)


def test_corrected_interval_is_wider_than_the_naive_one():
    values = [0.70, 0.72, 0.68, 0.75, 0.71, 0.69, 0.73, 0.70, 0.74, 0.72]
    mean, low, high = evaluation.corrected_interval(values, test_fraction=0.2, confidence=0.95)
    naive = 2.262 * np.std(values, ddof=1) / np.sqrt(len(values))
    assert mean == pytest.approx(np.mean(values))
    assert high - mean > naive
    # (1/J + n_test/n_train) = 0.1 + 0.25
    assert high - mean == pytest.approx(2.2622 * np.sqrt(0.35 * np.var(values, ddof=1)), rel=1e-3)


def test_paired_test_detects_a_consistent_difference():
    a = [0.80, 0.82, 0.79, 0.81, 0.83, 0.80, 0.82, 0.81, 0.80, 0.79]
    diff, p = evaluation.paired_test(a, [x - 0.1 for x in a[:5]] + [x - 0.12 for x in a[5:]], 0.2)
    assert diff == pytest.approx(0.11) and p < 0.01
    same, p_same = evaluation.paired_test(a, a, 0.2)
    assert same == 0 and p_same == 1.0


def test_bootstrap_is_seeded_and_brackets_the_point_estimate():
    first = evaluation.bootstrap_interval(TRUE * 3, PRED * 3, 0.95, seed=1)
    again = evaluation.bootstrap_interval(TRUE * 3, PRED * 3, 0.95, seed=1)
    assert first == again
    value, low, high = first["accuracy"]
    assert low <= value <= high and value == pytest.approx(accuracy_score(TRUE, PRED))


def test_bootstrap_is_the_percentile_interval_of_the_metric_over_resampled_sentences():
    # the protocol's interval, computed the slow way: scikit-learn's macro-F1 on each resample of the sentences
    truth, predicted = np.array(TRUE * 3), np.array(PRED * 3)
    draws = np.random.default_rng(7).integers(0, len(truth), (evaluation.BOOTSTRAP_RESAMPLES, len(truth)))
    f1 = [f1_score(truth[i], predicted[i], labels=list(LABELS), average="macro", zero_division=0) for i in draws]
    value, low, high = evaluation.bootstrap_interval(list(truth), list(predicted), 0.9, seed=7)["macro_f1"]
    assert (low, high) == pytest.approx(tuple(np.quantile(f1, [0.05, 0.95])), abs=1e-12)
    assert value == pytest.approx(f1_score(truth, predicted, labels=list(LABELS), average="macro", zero_division=0))
