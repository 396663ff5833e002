"""Choose and fit the post-processing (label prior, temperature) on out-of-fold predictions.

Given the raw probabilities every fold's model gave its held-out sentences:
1. **Prior.** Each method of `calibration.PRIOR_METHODS` is applied fold by fold, as the shipped
   model would apply it: `articles` uses the label mix of the fold's *training* articles, `em`
   estimates the mix of each held-out article on its own sentences (isolated sentences form one
   batch). The method with the best mean out-of-fold article macro-F1 is kept (ties: the
   simpler), unless the recipe fixes one (`model.prior`).
2. **Temperature.** Cross-fitted: for each fold, T is fitted on the other folds' adjusted
   article sentences and applied to this fold, so the reported calibration error is measured
   on predictions T never saw. The shipped T is fitted on all of them.
The fold scores of the chosen method are the run's `cv_*` scores: they estimate the pipeline
that is shipped. Selecting one of three methods on the same folds flatters it slightly.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from speechacts import calibration, evaluation
from speechacts.calibration import PRIOR_METHODS, PostProcess
from speechacts.labels import top_labels

COVERAGE_REPORTED = (0.5, 0.7, 0.9)


@dataclass
class PostFit:
    postprocess: PostProcess
    method: str
    fold_scores: list[dict[str, float]]  # under the chosen method
    adjusted: list[np.ndarray]  # per fold, the shipped pipeline's out-of-fold probabilities
    by_method: dict[str, list[dict[str, float]]]  # fold scores per prior method
    metrics: dict[str, float] = field(default_factory=dict)
    reliability_before: list[dict] = field(default_factory=list)
    reliability_after: list[dict] = field(default_factory=list)
    coverage: list[dict] = field(default_factory=list)


def fold_adjusted(method: str, rows, fold: evaluation.Fold, proba: np.ndarray, source: np.ndarray) -> np.ndarray:
    """A fold's held-out probabilities with a prior method applied as the shipped model would."""
    if method == "none":
        return np.asarray(proba, dtype=float)
    if method == "articles":
        target = calibration.label_mix([rows[i].label for i in fold.train if rows[i].in_article]
                                       or [rows[i].label for i in fold.train])
        return calibration.adjust_prior(proba, target, source)
    out = np.asarray(proba, dtype=float).copy()
    batches: dict[str, list[int]] = {}
    for j, i in enumerate(fold.test):
        batches.setdefault(rows[i].source if rows[i].in_article else "", []).append(j)
    post = PostProcess(prior_method="em", source_prior=source.tolist())
    for index in batches.values():
        out[index] = post.adjust(out[index])
    return out


def fit(rows, folds: list[evaluation.Fold], raw: list[np.ndarray], balanced: bool, method: str = "auto") -> PostFit:
    """Choose the prior method (or take `method`), fit the temperature, and score the result."""
    labels = [r.label for r in rows]
    source = calibration.uniform() if balanced else calibration.label_mix(labels)
    scored = {}
    by_method: dict[str, list[dict[str, float]]] = {}
    for m in PRIOR_METHODS:
        scored[m] = [fold_adjusted(m, rows, f, p, source) for f, p in zip(folds, raw)]
        by_method[m] = [evaluation.subset_scores([rows[i] for i in f.test], [labels[i] for i in f.test],
                                                 top_labels(p))
                        for f, p in zip(folds, scored[m])]
    key = "article_macro_f1" if "article_macro_f1" in by_method["none"][0] else "macro_f1"

    def mean(m):
        return float(np.mean([s[key] for s in by_method[m] if key in s]))

    chosen = method if method != "auto" else max(PRIOR_METHODS, key=lambda m: (round(mean(m), 6),
                                                                               -PRIOR_METHODS.index(m)))
    adjusted = scored[chosen]
    in_article = [np.array([rows[i].in_article for i in f.test]) for f in folds]
    if not any(mask.any() for mask in in_article):  # no articles: calibrate on every sentence
        in_article = [np.ones(len(f.test), dtype=bool) for f in folds]
    truth = [[labels[i] for i in f.test] for f in folds]

    def pooled(arrays, k=None):
        index = range(len(folds)) if k is None else [j for j in range(len(folds)) if j != k
                                                      and folds[j].repeat == folds[k].repeat]
        p = np.concatenate([arrays[j][in_article[j]] for j in index])
        y = [t for j in index for t, keep in zip(truth[j], in_article[j]) if keep]
        return p, y

    calibrated = []
    for k in range(len(folds)):
        p_other, y_other = pooled(adjusted, k)
        t = calibration.fit_temperature(p_other, y_other) if len(y_other) else 1.0
        calibrated.append(calibration.apply_temperature(adjusted[k], t))
    raw_p, y = pooled([np.asarray(p) for p in raw])
    adj_p, _ = pooled(adjusted)
    cal_p, _ = pooled(calibrated)
    temperature = calibration.fit_temperature(adj_p, y)
    target = calibration.label_mix([r.label for r in rows if r.in_article] or labels)
    result = PostFit(PostProcess(chosen, source.tolist(), target.tolist(), temperature), chosen,
                     by_method[chosen], calibrated, by_method)
    result.metrics = {"temperature": temperature,
                      "ece_article_raw": calibration.expected_calibration_error(raw_p, y),
                      "ece_article_adjusted": calibration.expected_calibration_error(adj_p, y),
                      "ece_article_calibrated": calibration.expected_calibration_error(cal_p, y)}
    for m in PRIOR_METHODS:
        for metric in ("macro_f1", "accuracy"):
            values = [s[f"{key.removesuffix('macro_f1')}{metric}"] for s in by_method[m]
                      if f"{key.removesuffix('macro_f1')}{metric}" in s]
            result.metrics[f"prior_{m}_cv_{key.removesuffix('macro_f1')}{metric}"] = float(np.mean(values))
    result.reliability_before = calibration.reliability(raw_p, y)
    result.reliability_after = calibration.reliability(cal_p, y)
    result.coverage = calibration.coverage_curve(cal_p, y)
    for c in result.coverage:
        if c["threshold"] in COVERAGE_REPORTED:
            result.metrics[f"coverage_at_{c['threshold']:.1f}"] = c["coverage"]
            result.metrics[f"accuracy_at_{c['threshold']:.1f}"] = c["accuracy"]
    return result


def log(result: PostFit, tracking) -> None:
    """Metrics, tags, the reliability diagram and the coverage curve of the chosen post-processing."""
    import pandas as pd

    from speechacts import plots

    tracking.log_metrics({k: v for k, v in result.metrics.items() if v == v})  # drop NaN
    tracking.set_tags({"prior_method": result.method})
    tracking.log_frame(pd.DataFrame(result.coverage), "calibration/coverage_accuracy.csv")
    tracking.log_frame(pd.DataFrame([{**r, "when": "raw"} for r in result.reliability_before]
                                    + [{**r, "when": "calibrated"} for r in result.reliability_after]),
                       "calibration/reliability.csv")
    tracking.log_figure(plots.reliability_figure(result.reliability_before, result.reliability_after,
                                                 result.metrics["ece_article_raw"],
                                                 result.metrics["ece_article_calibrated"]),
                        "plots/reliability_diagram.png")
    tracking.log_figure(plots.coverage_figure(result.coverage), "plots/coverage_accuracy.png")
