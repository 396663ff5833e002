"""The evaluation protocol every model family shares.

- Folds: stratified group k-fold, repeated with shifted seeds. A group is an article: every
  sentence of an article falls in the same fold, so no model is scored on an article it
  trained on; an isolated sentence is a group of its own. The assignment depends only on the
  rows, their labels, their groups and the seed, so every family given the same data and
  seed gets the same folds.
- Metrics: macro-F1 (headline), accuracy, balanced accuracy, per-label precision/recall/F1,
  always over the fixed label list, with zero division scored 0.
- Intervals over folds: the corrected resampled t interval (Nadeau & Bengio, 2003). Folds
  share training data, so the plain standard error is too small; the variance is inflated
  by (1/J + n_test/n_train) for J = folds x repeats fold scores.
- Intervals on one test set (the seed article): percentile bootstrap over its sentences.
- Paired comparison of two runs on identical folds: the corrected resampled t-test on the
  per-fold differences.
"""

from __future__ import annotations

import hashlib
import warnings
from collections import Counter
from dataclasses import dataclass

import numpy as np
from scipy import stats
from sklearn.model_selection import StratifiedGroupKFold

from speechacts.errors import DataError
from speechacts.labels import LABELS

BOOTSTRAP_RESAMPLES = 1000
# Subsets of the training rows scored apart: all, the sentences of articles (the headline), the
# isolated sentences. A row only needs an `in_article` attribute.
SUBSETS = {"": lambda row: True, "article_": lambda row: row.in_article,
           "isolated_": lambda row: not row.in_article}


@dataclass(frozen=True)
class Fold:
    repeat: int
    fold: int
    train: np.ndarray
    test: np.ndarray


def make_folds(labels: list[str], groups: list[str], n_folds: int, repeats: int, seed: int) -> list[Fold]:
    """Stratified group k-fold, `repeats` times; refuses a label with fewer examples, or
    fewer groups, than folds."""
    count = Counter(labels)
    too_few = {label: n for label, n in count.items() if n < n_folds}
    if too_few:
        listed = ", ".join(f"{label} ({n})" for label, n in sorted(too_few.items()))
        raise DataError(f"evaluation.folds={n_folds} needs at least {n_folds} examples of every label, "
                        f"but these have fewer: {listed}; lower evaluation.folds or add data")
    if len(set(groups)) < n_folds:
        raise DataError(f"evaluation.folds={n_folds} needs at least {n_folds} articles or isolated sentences, "
                        f"got {len(set(groups))}; lower evaluation.folds or add data")
    y, g = np.asarray(labels), np.asarray(groups)
    folds = []
    for repeat in range(repeats):
        splitter = StratifiedGroupKFold(n_splits=n_folds, shuffle=True, random_state=seed + repeat)
        for fold, (train, test) in enumerate(splitter.split(np.zeros(len(y)), y, g)):
            folds.append(Fold(repeat, fold, train, test))
    return folds


def fold_table(ids: list[str], folds: list[Fold]) -> list[dict]:
    """One row per (id, repeat): the fold that held the sentence out."""
    return [{"id": ids[i], "repeat": f.repeat, "fold": f.fold} for f in folds for i in f.test]


def folds_digest(ids: list[str], folds: list[Fold]) -> str:
    """A short hash of the fold assignment: equal digests mean runs compare pair by pair."""
    text = "\n".join(f"{r['id']}\t{r['repeat']}\t{r['fold']}" for r in sorted(
        fold_table(ids, folds), key=lambda r: (r["repeat"], r["id"])))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def confusion(y_true: list[str], y_pred: list[str]) -> np.ndarray:
    """5x5 counts, rows true and columns predicted, in the fixed label order."""
    from sklearn.metrics import confusion_matrix

    return confusion_matrix(y_true, y_pred, labels=list(LABELS))


def scores(y_true: list[str], y_pred: list[str]) -> dict[str, float]:
    """Headline and per-label metrics over the fixed label list, as scikit-learn computes them
    with labels=LABELS and zero_division=0; a label absent from a fold scores 0, never crashes.
    Computed from the confusion matrix, so the bootstrap can score a thousand resamples at once."""
    return {key: float(value) for key, value in scores_from_confusion(confusion(y_true, y_pred)).items()}


def scores_from_confusion(cm: np.ndarray) -> dict[str, np.ndarray]:
    """The metrics of `scores` from confusion matrices of shape (..., 5, 5), one value per matrix.

    Hand-written on purpose: scikit-learn scores one prediction list per call, and the bootstrap's
    1,000 resamples of 24 sentences took 2.7 s that way against 0.007 s here (measured under load);
    tests/test_evaluation.py checks both against scikit-learn."""
    tp = np.diagonal(cm, axis1=-2, axis2=-1).astype(float)
    support, predicted = cm.sum(axis=-1), cm.sum(axis=-2)
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = np.where(predicted > 0, tp / predicted, 0.0)
        recall = np.where(support > 0, tp / support, 0.0)
        f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0)
        total, present = cm.sum(axis=(-2, -1)), (support > 0).sum(axis=-1)
        out = {"macro_f1": f1.mean(axis=-1),
               "accuracy": np.where(total > 0, tp.sum(axis=-1) / total, 0.0),
               # balanced accuracy averages recall over the labels present in y_true (as scikit-learn)
               "balanced_accuracy": np.where(present > 0, (recall * (support > 0)).sum(axis=-1) / present, 0.0)}
    for i, label in enumerate(LABELS):
        out[f"precision_{label}"] = precision[..., i]
        out[f"recall_{label}"] = recall[..., i]
        out[f"f1_{label}"] = f1[..., i]
    return out


def corrected_interval(values: list[float], test_fraction: float, confidence: float) -> tuple[float, float, float]:
    """(mean, low, high) of fold scores with the Nadeau-Bengio corrected variance."""
    x = np.asarray(values, dtype=float)
    mean = float(x.mean())
    if len(x) < 2:
        return mean, mean, mean
    ratio = test_fraction / (1 - test_fraction)
    se = np.sqrt((1 / len(x) + ratio) * x.var(ddof=1))
    half = float(stats.t.ppf((1 + confidence) / 2, df=len(x) - 1) * se)
    return mean, max(0.0, mean - half), min(1.0, mean + half)


def bootstrap_interval(y_true: list[str], y_pred: list[str], confidence: float,
                       seed: int) -> dict[str, tuple[float, float, float]]:
    """(value, low, high) per metric on one test set, by percentile bootstrap over sentences
    (scipy.stats.bootstrap, method='percentile': the protocol above; its default BCa needs a
    jackknife and gives NaN where a metric does not vary, e.g. the recall of an absent label)."""
    point = scores(y_true, y_pred)
    n_labels = len(LABELS)
    index = {label: i for i, label in enumerate(LABELS)}
    # each sentence as its cell of the confusion matrix; a resample's matrix is a bincount of its cells
    cells = np.array([index[t] * n_labels + index[p] for t, p in zip(y_true, y_pred)])

    def metrics(sample: np.ndarray, axis: int = -1) -> np.ndarray:
        """(metrics, *resamples): each resample's cells counted into its own block of the bincount."""
        sample = np.moveaxis(sample, axis, -1)
        flat = sample.reshape(-1, sample.shape[-1])
        offsets = np.arange(len(flat))[:, None] * n_labels ** 2
        cm = np.bincount((flat + offsets).ravel(), minlength=len(flat) * n_labels ** 2)
        values = scores_from_confusion(cm.reshape(len(flat), n_labels, n_labels))
        return np.stack([values[key].reshape(sample.shape[:-1]) for key in point])

    result = stats.bootstrap((cells,), metrics, n_resamples=BOOTSTRAP_RESAMPLES, confidence_level=confidence,
                             method="percentile", rng=np.random.default_rng(seed))
    low, high = result.confidence_interval
    return {key: (value, float(low[k]), float(high[k])) for k, (key, value) in enumerate(point.items())}


def summarise_folds(fold_scores: list[dict[str, float]], test_fraction: float,
                    confidence: float) -> dict[str, tuple[float, float, float]]:
    """(mean, low, high) per metric over the folds that have it (a fold may hold no sentence of
    a subset, e.g. no article)."""
    keys = dict.fromkeys(key for s in fold_scores for key in s)
    return {key: corrected_interval([s[key] for s in fold_scores if key in s], test_fraction, confidence)
            for key in keys}


def paired_test(a: list[float], b: list[float], test_fraction: float) -> tuple[float, float]:
    """Corrected resampled t-test of mean(a - b) over identical folds: (mean difference, p-value)."""
    d = np.asarray(a, dtype=float) - np.asarray(b, dtype=float)
    if len(d) < 2:
        return float(d.mean()), float("nan")
    var = d.var(ddof=1)
    if var == 0:
        return float(d.mean()), 1.0 if d.mean() == 0 else 0.0
    ratio = test_fraction / (1 - test_fraction)
    t = d.mean() / np.sqrt((1 / len(d) + ratio) * var)
    return float(d.mean()), float(2 * stats.t.sf(abs(t), df=len(d) - 1))


def subset_scores(rows: list, truth: list[str], predicted: list[str]) -> dict[str, float]:
    """Scores on every subset that has rows here: unprefixed for all, `article_`, `isolated_`."""
    out = {}
    for prefix, keep in SUBSETS.items():
        index = [i for i, row in enumerate(rows) if keep(row)]
        if index:
            out |= {prefix + k: v for k, v in scores([truth[i] for i in index], [predicted[i] for i in index]).items()}
    return out


def inner_split(labels: list[str], groups: list[str | None] | None, fraction: float,
                seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(fit, validation) indices inside a training set: about `fraction` of its articles, whole,
    held out (stratified by label), so that the validation score is an article score; sentences
    alone (group None) always stay in the fit part. Without articles, single sentences are held out."""
    index = np.arange(len(labels))
    articles = index if groups is None or all(g is None for g in groups) else np.array(
        [i for i in index if groups[i] is not None])
    group = np.asarray([str(i) if groups is None or groups[i] is None else groups[i] for i in articles])
    n_groups = len(set(group))
    if n_groups < 2:
        raise DataError(f"early stopping holds out whole articles for validation, but the training set has "
                        f"{n_groups}; set model.early_stopping_patience=null or add articles")
    splitter = StratifiedGroupKFold(n_splits=min(n_groups, max(2, round(1 / fraction))), shuffle=True,
                                    random_state=seed)
    with warnings.catch_warnings():  # a rare label in fewer articles than splits: the split is still grouped
        warnings.simplefilter("ignore", UserWarning)
        _, held = next(splitter.split(np.zeros(len(articles)), np.asarray(labels)[articles], group))
    validation = articles[held]
    return np.setdiff1d(index, validation), validation
