"""The curve job: would more labelled data help? A learning curve on the train job's folds.

The recipe is trained on growing fractions of each fold's training part (1/2^(points-1), ...,
1/4, 1/2, 1): articles are sampled whole, isolated sentences one by one, and each smaller
sample is part of the next. The folds are the train job's (grouped by article, same seed)
and every test fold stays whole, so each point is scored on the same sentences. Macro-F1 on
article sentences (all sentences where there are no articles) is plotted against the number
of labelled training sentences, with its corrected-t interval over folds, and logged as one
MLflow parent run (one child per point) in the experiment `<tracking.experiment>-curves`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from speechacts import evaluation, tracking
from speechacts.classifier import build
from speechacts.config import Config
from speechacts.data import Row, select, validate
from speechacts.errors import DataError
from speechacts.labels import top_labels

EXPERIMENT_SUFFIX = "-curves"  # kept apart from the training runs that `compare` reads


@dataclass
class Point:
    fraction: float
    sentences: float  # labelled training sentences, mean over folds
    articles: float  # training articles, mean over folds
    score: tuple[float, float, float]  # (mean, low, high) over folds


@dataclass
class CurveResult:
    run_id: str
    metric: str
    points: list[Point]
    seconds: float

    @property
    def doubling_gain(self) -> float:
        """Points of macro-F1 the last doubling of the data added."""
        return 100 * (self.points[-1].score[0] - self.points[-2].score[0])


def fractions(points: int) -> list[float]:
    """Halvings of the training data, smallest first: points=5 -> 1/16, 1/8, 1/4, 1/2, 1."""
    if points < 2:
        raise DataError(f"--points must be at least 2 (a doubling needs two points), got {points}")
    return [2.0 ** -(points - 1 - i) for i in range(points)]


def nested_samples(rows: list[Row], train: np.ndarray, fracs: list[float], seed: int) -> list[np.ndarray]:
    """For each fraction, the training rows kept: whole articles and single isolated sentences,
    drawn in one shuffled order so that each sample holds the smaller ones."""
    rng = np.random.default_rng(seed)
    articles = sorted({rows[i].source for i in train if rows[i].in_article})
    isolated = [i for i in train if not rows[i].in_article]
    article_order = [articles[j] for j in rng.permutation(len(articles))]
    isolated_order = [isolated[j] for j in rng.permutation(len(isolated))]
    samples = []
    for fraction in fracs:
        kept = set(article_order[:max(1, round(fraction * len(articles)))] if articles else [])
        n_isolated = max(1, round(fraction * len(isolated))) if isolated else 0
        samples.append(np.array(sorted([i for i in train if rows[i].in_article and rows[i].source in kept]
                                       + isolated_order[:n_isolated])))
    return samples


def check_samples(samples: list[list[np.ndarray]], labels: list[str], fracs: list[float]) -> None:
    """Refuse points that repeat a sample (at least one article and one isolated sentence are kept)
    or a smallest sample with a single label, which no classifier can be fitted on."""
    for k, fold_samples in enumerate(samples):
        present = {labels[i] for i in fold_samples[0]}
        if len(present) < 2:
            raise DataError(f"--points {len(fracs)}: the smallest sample (1/{round(1 / fracs[0])} of the data) of "
                            f"fold {k} has only the label(s) {', '.join(sorted(present))}; lower --points or add data")
        for small, large, fraction in zip(fold_samples, fold_samples[1:], fracs):
            if len(small) == len(large):
                raise DataError(f"--points {len(fracs)}: too many for this data: in fold {k}, 1/{round(1 / fraction)} "
                                f"and 1/{round(0.5 / fraction)} of the training part are the same {len(small)} "
                                "sentences (one article and one isolated sentence at least); lower --points")


def run(cfg: Config, points: int = 5) -> CurveResult:
    """Train the recipe on growing fractions of every fold, log the curve, print the last doubling's gain."""
    started = time.perf_counter()
    fracs = fractions(points)
    # data and folds, exactly as the train job makes them
    rows = select(validate(cfg.data).train, cfg.data)
    labels = [r.label for r in rows]
    folds = evaluation.make_folds(labels, [r.group for r in rows], cfg.evaluation.folds, cfg.evaluation.repeats,
                                  cfg.seed)
    metric = "article_macro_f1" if any(r.in_article for r in rows) else "macro_f1"
    samples = [nested_samples(rows, f.train, fracs, cfg.seed + k) for k, f in enumerate(folds)]
    check_samples(samples, labels, fracs)
    # tracking
    tracking.connect(cfg.tracking.model_copy(update={"experiment": cfg.tracking.experiment + EXPERIMENT_SUFFIX}))
    tags = {"family": cfg.model.family, "recipe": cfg.name, "job": "learning_curve",
            "git_commit": tracking.git_commit(), "folds_digest": evaluation.folds_digest([r.id for r in rows], folds)}
    print(f"{cfg.name}: learning curve, {points} points ({', '.join(f'{q:g}' for q in fracs)} of the training data) "
          f"x {len(folds)} folds, scored by {metric}", flush=True)
    result_points = []
    with tracking.run(f"{cfg.name}/curve", tags=tags) as run_id:
        tracking.log_params({**cfg.flat(), "curve.points": points})
        for p, fraction in enumerate(fracs):
            point = fit_point(cfg, rows, folds, [s[p] for s in samples], fraction, metric)
            result_points.append(point)
            tracking.log_metrics({f"curve_{metric}": point.score[0], f"curve_{metric}_ci_low": point.score[1],
                                  f"curve_{metric}_ci_high": point.score[2],
                                  "curve_train_sentences": point.sentences}, step=p)
        result = CurveResult(run_id, metric, result_points, time.perf_counter() - started)
        tracking.log_metrics({"doubling_gain_points": result.doubling_gain, "curve_seconds": result.seconds})
        log_artifacts(cfg, result)
    print_curve(result)
    return result


def fit_point(cfg: Config, rows: list[Row], folds: list[evaluation.Fold], trains: list[np.ndarray],
              fraction: float, metric: str) -> Point:
    """Fit on each fold's sample, score the whole test fold; one child run."""
    from speechacts.context import for_rows
    from speechacts.evaluation import subset_scores

    texts, labels = [r.text for r in rows], [r.label for r in rows]
    contexts = for_rows(cfg.model.context, rows)

    def pick(index):
        return None if contexts is None else [contexts[i] for i in index]

    scores, ratios = [], []
    with tracking.run(f"{cfg.name}/curve/{fraction:g}", nested=True, tags={"fraction": f"{fraction:g}"}):
        for fold, train in zip(folds, trains):
            model = build(cfg.model, cfg.seed).fit([texts[i] for i in train], [labels[i] for i in train], pick(train),
                                                   groups=[rows[i].source if rows[i].in_article else None
                                                           for i in train])
            proba = model.predict_proba([texts[i] for i in fold.test], pick(fold.test))
            scores.append(subset_scores([rows[i] for i in fold.test], [labels[i] for i in fold.test],
                                        top_labels(proba)))
            ratios.append(len(fold.test) / (len(fold.test) + len(train)))
        summary = evaluation.summarise_folds(scores, float(np.mean(ratios)), cfg.evaluation.confidence)
        point = Point(fraction, float(np.mean([len(t) for t in trains])),
                      float(np.mean([len({rows[i].source for i in t if rows[i].in_article}) for t in trains])),
                      summary[metric])
        tracking.log_metrics({"fraction": fraction, "train_sentences": point.sentences, metric: point.score[0],
                              f"{metric}_ci_low": point.score[1], f"{metric}_ci_high": point.score[2]})
    print(f"  {fraction:>7.4f} of the data: {point.sentences:6.0f} sentences ({point.articles:.0f} articles)  "
          f"{metric} {point.score[0]:.3f} [{point.score[1]:.3f}, {point.score[2]:.3f}]", flush=True)
    return point


def log_artifacts(cfg: Config, result: CurveResult) -> None:
    import pandas as pd

    tracking.log_text(cfg.to_yaml(), "config.yaml")
    tracking.log_frame(pd.DataFrame([{"fraction": p.fraction, "train_sentences": p.sentences,
                                      "train_articles": p.articles, result.metric: p.score[0],
                                      "ci_low": p.score[1], "ci_high": p.score[2]} for p in result.points]),
                       "learning_curve.csv")
    tracking.log_figure(figure(cfg, result), "plots/learning_curve.png")


def figure(cfg: Config, result: CurveResult):
    from speechacts import plots

    what = "article sentences" if result.metric.startswith("article_") else "all sentences"
    return plots.learning_curve_figure(
        [p.sentences for p in result.points], [p.score for p in result.points],
        f"macro-F1 on {what} (out of fold, {int(100 * cfg.evaluation.confidence)}% CI)",
        f"{cfg.name}: learning curve; the last doubling added {result.doubling_gain:+.1f} points")


def print_curve(result: CurveResult) -> None:
    last, before = result.points[-1], result.points[-2]
    print(f"\ndoubling the data added {result.doubling_gain:+.1f} points ({result.metric} {before.score[0]:.3f} "
          f"with {before.sentences:.0f} training sentences -> {last.score[0]:.3f} with {last.sentences:.0f}); "
          f"run {result.run_id}, {result.seconds:.1f} s")
