"""The train job: cross-validate one recipe, score the seed articles, fit and log the final model.

Order: seed, data, folds, tracking, cross-validation (with references), final model and
real-text check, save and register. Everything lands in one MLflow parent run.

Out-of-fold scores are reported on three subsets of the training rows: all of them (`cv_*`),
the sentences of articles (`cv_article_*`, the headline: real reporting is what the models
are for) and the isolated authored sentences (`cv_isolated_*`).
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from speechacts import context, distributed, evaluation, postfit, tracking
from speechacts.classifier import build, package_versions
from speechacts.config import Config
from speechacts.data import ISOLATED, Row, select, validate
from speechacts.labels import LABELS, top_labels
from speechacts.models import onnx
from speechacts.models.onnx import CheckSet
from speechacts.prepare import data_card, shortcut_report

REFERENCES = ("majority", "stratified", "assessment")
SUMMARY_METRICS = ("macro_f1", "accuracy", "balanced_accuracy")
HEADLINE = "article_macro_f1"  # the champion is chosen by it; falls back to macro_f1 without articles


@dataclass
class TrainResult:
    run_id: str
    name: str
    family: str
    cv: dict[str, tuple[float, float, float]]
    seed_scores: dict[str, tuple[float, float, float]]
    fold_scores: list[dict[str, float]]
    references: dict[str, dict[str, tuple[float, float, float]]]
    model_dir: Path
    model_uri: str
    model_version: str | None
    seconds: float
    oof: list[dict] = field(repr=False, default_factory=list)

    @property
    def headline(self) -> tuple[float, float, float]:
        return self.cv.get(HEADLINE) or self.cv["macro_f1"]

    @property
    def headline_metric(self) -> str:
        """The MLflow metric name of the headline: cv_article_macro_f1, or cv_macro_f1 without articles."""
        return "cv_" + (HEADLINE if HEADLINE in self.cv else "macro_f1")


def set_seed(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)


def reference_predictions(kind: str, train_labels: list[str], n_test: int, seed: int) -> list[str]:
    """Majority class, labels drawn at random with the training label frequencies, or always
    "assessment" (what a reader who never sees an act would answer)."""
    from sklearn.dummy import DummyClassifier

    if kind == "assessment":
        return ["assessment"] * n_test
    strategy = "most_frequent" if kind == "majority" else "stratified"
    dummy = DummyClassifier(strategy=strategy, random_state=seed).fit(np.zeros((len(train_labels), 1)), train_labels)
    return list(dummy.predict(np.zeros((n_test, 1))))


def class_balanced(model_cfg) -> bool:
    """Whether the family weights labels so that it learns as if they were equally frequent."""
    return getattr(model_cfg, "class_weight", None) == "balanced" or getattr(model_cfg, "class_weighting", False)


def articles(rows: list[Row]) -> list[str | None]:
    """Each row's article, None for a sentence alone: what an inner validation split keeps whole."""
    return [r.source if r.in_article else None for r in rows]


def fit_fold(cfg: Config, rows: list[Row], fold: evaluation.Fold, log_metrics=None):
    """A fresh model fitted on a fold's training rows; families that train in epochs score its test rows."""
    train, test = [rows[i] for i in fold.train], [rows[i] for i in fold.test]
    kind = cfg.model.context
    return build(cfg.model, cfg.seed).fit([r.text for r in train], [r.label for r in train],
                                          context.for_rows(kind, train),
                                          eval_set=([r.text for r in test], [r.label for r in test],
                                                    context.for_rows(kind, test)),
                                          log_metrics=log_metrics, groups=articles(train))


def epoch_logger(progress, position: int, heard: list[int]):
    """log_metrics for one fold's model: to MLflow, and each epoch's validation macro-F1 to progress."""
    def log(metrics: dict[str, float], step: int | None = None) -> None:
        tracking.log_metrics(metrics, step=step)
        if progress and "val_macro_f1" in metrics:
            heard.append(step)
            progress(position, step, metrics["val_macro_f1"])
    return log


def cross_validate(cfg: Config, rows: list[Row], folds: list[evaluation.Fold], progress=None):
    """One child run per fold (the raw model's scores); returns the raw fold scores, reference fold
    scores and each fold's raw out-of-fold probabilities.

    progress(fold_index, epoch, value), when given, hears each epoch's validation macro-F1, or,
    for families without epochs, each fold's headline score (epoch 0). It may raise to stop the
    job (a pruned sweep trial); the runs then end KILLED."""
    texts = [r.text for r in rows]
    labels = [r.label for r in rows]
    contexts = context.for_rows(cfg.model.context, rows)

    def pick(values, index):
        return None if values is None else [values[i] for i in index]

    fold_scores, raw = [], []
    ref_scores: dict[str, list[dict[str, float]]] = {kind: [] for kind in REFERENCES}
    for position, f in enumerate(folds):
        started = time.perf_counter()
        train_labels = [labels[i] for i in f.train]
        test_texts, test_labels = [texts[i] for i in f.test], [labels[i] for i in f.test]
        heard: list[int] = []
        with tracking.run(f"{cfg.name}/repeat{f.repeat}-fold{f.fold}", nested=True,
                          tags={"repeat": str(f.repeat), "fold": str(f.fold), "family": cfg.model.family}):
            model = fit_fold(cfg, rows, f, epoch_logger(progress, position, heard))
            proba = model.predict_proba(test_texts, pick(contexts, f.test))
            predicted = top_labels(proba)
            test_rows = [rows[i] for i in f.test]
            score = evaluation.subset_scores(test_rows, test_labels, predicted)
            tracking.log_metrics({**score, "fit_seconds": time.perf_counter() - started})
            if progress and not heard:
                progress(position, 0, score.get(HEADLINE, score["macro_f1"]))
        fold_scores.append(score)
        for kind in REFERENCES:
            ref = reference_predictions(kind, train_labels, len(test_labels), cfg.seed + len(fold_scores))
            ref_scores[kind].append(evaluation.subset_scores(test_rows, test_labels, ref))
        raw.append(proba)
        article = (f"  article macro-F1 {score['article_macro_f1']:.3f} accuracy {score['article_accuracy']:.3f}"
                   if "article_macro_f1" in score else "")
        print(f"  repeat {f.repeat} fold {f.fold}: macro-F1 {score['macro_f1']:.3f}{article}  "
              f"({time.perf_counter() - started:.1f} s)", flush=True)
    return fold_scores, ref_scores, raw


def oof_rows(rows: list[Row], folds: list[evaluation.Fold], raw: list[np.ndarray],
             adjusted: list[np.ndarray]) -> list[dict]:
    """One row per held-out sentence and repeat: the shipped pipeline's probabilities and label,
    and the raw model's label."""
    out = []
    for f, p_raw, p in zip(folds, raw, adjusted):
        predicted, predicted_raw = top_labels(p), top_labels(p_raw)
        for j, i in enumerate(f.test):
            out.append({"id": rows[i].id, "source": rows[i].source, "kind": rows[i].kind, "text": rows[i].text,
                        "true": rows[i].label, "predicted": predicted[j], "predicted_raw": predicted_raw[j],
                        **{f"p_{label}": float(p[j, k]) for k, label in enumerate(LABELS)},
                        "repeat": f.repeat, "fold": f.fold})
    return out


def follow(cfg: Config, rows: list[Row], folds: list[evaluation.Fold]) -> None:
    """A process other than rank 0 of a multi-process job: the same fits in the same order, so
    that it trains alongside rank 0; it logs, scores and writes nothing."""
    for f in folds:
        fit_fold(cfg, rows, f)
    build(cfg.model, cfg.seed).fit([r.text for r in rows], [r.label for r in rows],
                                   context.for_rows(cfg.model.context, rows), groups=articles(rows))


def likely_mislabelled(oof: list[dict], top: int = 50):
    """The sentences that confident learning (cleanlab's find_label_issues, per-label thresholds
    on the mean out-of-fold probabilities over repeats) flags as likely mislabelled, the lowest
    probability for the given label first."""
    import pandas as pd
    from cleanlab.filter import find_label_issues

    columns = [f"p_{label}" for label in LABELS]
    grouped = pd.DataFrame(oof).groupby("id", sort=False).agg(
        text=("text", "first"), given=("true", "first"),
        predicted=("predicted", lambda s: s.value_counts().index[0]), **{c: (c, "mean") for c in columns})
    proba = grouped[columns].to_numpy()
    given = grouped["given"].map(LABELS.index).to_numpy()
    grouped["p_given"] = proba[np.arange(len(grouped)), given]
    # n_jobs=1: 2,000 sentences took 15 ms in one process, 194 ms with the default worker pool (under load)
    issues = find_label_issues(given, proba / proba.sum(axis=1, keepdims=True), filter_by="prune_by_noise_rate",
                               return_indices_ranked_by="self_confidence", n_jobs=1)
    return grouped.iloc[issues][["text", "given", "p_given", "predicted"]].head(top).reset_index()


def interval_metrics(prefix: str, summary: dict[str, tuple[float, float, float]]) -> dict[str, float]:
    out = {}
    for key, (value, low, high) in summary.items():
        out[f"{prefix}{key}"] = value
        out[f"{prefix}{key}_ci_low"] = low
        out[f"{prefix}{key}_ci_high"] = high
    return out


def log_cv_artifacts(cfg: Config, rows: list[Row], folds, fold_scores, ref_scores, oof, summary) -> None:
    import pandas as pd
    from sklearn.metrics import classification_report

    from speechacts import plots

    frame = pd.DataFrame(oof)
    tracking.log_frame(frame, "predictions/oof_predictions.csv")
    tracking.log_frame(pd.DataFrame(evaluation.fold_table([r.id for r in rows], folds)), "folds.csv")
    per_fold = [{"model": cfg.name, "repeat": f.repeat, "fold": f.fold, **s} for f, s in zip(folds, fold_scores)]
    per_fold += [{"model": f"reference:{kind}", "repeat": f.repeat, "fold": f.fold, **s}
                 for kind in REFERENCES for f, s in zip(folds, ref_scores[kind])]
    tracking.log_frame(pd.DataFrame(per_fold), "cv_scores.csv")
    tracking.log_dict(classification_report(frame["true"], frame["predicted"], labels=list(LABELS),
                                            output_dict=True, zero_division=0), "reports/cv_classification_report.json")
    tracking.log_figure(plots.confusion_figure(list(frame["true"]), list(frame["predicted"]),
                                               f"{cfg.name}: out-of-fold predictions, all repeats"),
                        "plots/cv_confusion_matrix.png")
    articles = frame[frame["kind"] != ISOLATED]
    if len(articles):
        tracking.log_figure(plots.confusion_figure(list(articles["true"]), list(articles["predicted"]),
                                                   f"{cfg.name}: out-of-fold predictions, article sentences"),
                            "plots/cv_article_confusion_matrix.png")
    tracking.log_figure(plots.per_label_f1_figure(summary, f"{cfg.name}: per-label F1 over folds"),
                        "plots/cv_per_label_f1.png")
    tracking.log_frame(likely_mislabelled(oof), "predictions/likely_mislabelled.csv")


def real_text_check(cfg: Config, model, test_rows: list[Row]) -> dict[str, tuple[float, float, float]]:
    """Score the final model (trained on the training rows only) on the seed articles."""
    import pandas as pd
    from sklearn.metrics import classification_report

    from speechacts import plots

    if not test_rows:
        return {}
    texts, truth = [r.text for r in test_rows], [r.label for r in test_rows]
    proba = model.predict_proba(texts, context.for_rows(cfg.model.context, test_rows))
    predicted = top_labels(proba)
    result = evaluation.bootstrap_interval(truth, predicted, cfg.evaluation.confidence, cfg.seed)
    tracking.log_frame(pd.DataFrame([{"id": r.id, "text": r.text, "true": r.label, "predicted": p,
                                      **{f"p_{label}": float(proba[j, k]) for k, label in enumerate(LABELS)}}
                                     for j, (r, p) in enumerate(zip(test_rows, predicted))]),
                       "predictions/seed_predictions.csv")
    tracking.log_dict(classification_report(truth, predicted, labels=list(LABELS), output_dict=True,
                                            zero_division=0), "reports/seed_classification_report.json")
    tracking.log_figure(plots.confusion_figure(truth, predicted, f"{cfg.name}: seed articles (real text)"),
                        "plots/seed_confusion_matrix.png")
    return result


def log_article_reports(cfg: Config, model) -> None:
    """The final model's HTML view of each seed article (reports/<article>.html, opens in the MLflow UI)."""
    from speechacts import report
    from speechacts.segment import read_article, seed_articles

    for name, path in seed_articles(cfg.data.seeds_dir).items():
        tracking.log_text(report.render(read_article(path), name, model, model_name=f"{cfg.name} ({cfg.model.family})"),
                          f"reports/{name}.html")


def run(cfg: Config, extra_tags: dict[str, str] | None = None, progress=None) -> TrainResult | None:
    """Train, evaluate, log and register one recipe. Under torchrun every process calls it; rank 0
    does the job and returns its result, the others train alongside it and return None."""
    import pandas as pd

    from speechacts.serving import proba_frame

    started = time.perf_counter()
    distributed.check(cfg)
    # seed
    set_seed(cfg.seed)
    # data
    corpus = validate(cfg.data)
    rows = select(corpus.train, cfg.data)
    texts, labels = [r.text for r in rows], [r.label for r in rows]
    # folds
    folds = evaluation.make_folds(labels, [r.group for r in rows], cfg.evaluation.folds, cfg.evaluation.repeats,
                                  cfg.seed)
    digest = evaluation.folds_digest([r.id for r in rows], folds)
    test_fraction = 1 / cfg.evaluation.folds
    if not distributed.is_main():
        follow(cfg, rows, folds)
        return None
    # tracking
    tracking.connect(cfg.tracking)
    versions = package_versions()
    tags = {"family": cfg.model.family, "recipe": cfg.name, "git_commit": tracking.git_commit(),
            "folds_digest": digest, **{f"version.{k}": v for k, v in versions.items()}, **(extra_tags or {})}
    n_articles = len({r.source for r in rows if r.in_article})
    print(f"{cfg.name}: {cfg.model.family}, {len(rows)} sentences ({sum(r.in_article for r in rows)} in "
          f"{n_articles} articles), {cfg.evaluation.repeats} x {cfg.evaluation.folds}-fold cross-validation "
          f"grouped by article (folds {digest})", flush=True)
    with tracking.run(cfg.name, tags=tags) as run_id:
        tracking.log_params(cfg.flat())
        tracking.log_text(cfg.to_yaml(), "config.yaml")
        shortcut = shortcut_report(corpus)
        tracking.log_text(data_card(corpus, shortcut), "data_card.md")
        tracking.log_metrics(shortcut.metrics())
        frame = pd.DataFrame({"id": [r.id for r in rows], "source": [r.source for r in rows],
                              "kind": [r.kind for r in rows], "topic": [r.topic for r in rows],
                              "hard": [r.hard for r in rows], "text": texts, "label": labels})
        tracking.log_dataset(frame, "training", ",".join(map(str, cfg.data.train)), "training")
        if corpus.test:
            tracking.log_dataset(pd.DataFrame({"id": [r.id for r in corpus.test], "text": [r.text for r in corpus.test],
                                               "label": [r.label for r in corpus.test]}),
                                 "seed-articles", ",".join(map(str, cfg.data.test)), "testing")
        # cross-validation, then the prior adjustment and temperature chosen on its predictions
        raw_scores, ref_scores, raw = cross_validate(cfg, rows, folds, progress)
        post = postfit.fit(rows, folds, raw, balanced=class_balanced(cfg.model), method=cfg.model.prior)
        fold_scores = post.fold_scores
        oof = oof_rows(rows, folds, raw, post.adjusted)
        postfit.log(post, tracking)
        conf = cfg.evaluation.confidence
        summary = evaluation.summarise_folds(fold_scores, test_fraction, conf)
        references = {kind: evaluation.summarise_folds(ref_scores[kind], test_fraction, conf) for kind in REFERENCES}
        tracking.log_metrics(interval_metrics("cv_", summary))
        for kind in REFERENCES:
            tracking.log_metrics(interval_metrics(f"ref_{kind}_cv_", {
                prefix + k: references[kind][prefix + k] for prefix in evaluation.SUBSETS for k in SUMMARY_METRICS
                if prefix + k in references[kind]}))
        log_cv_artifacts(cfg, rows, folds, fold_scores, ref_scores, oof, summary)
        # final model, and the real-text check on the seed articles
        fit_started = time.perf_counter()
        model = build(cfg.model, cfg.seed).fit(texts, labels, context.for_rows(cfg.model.context, rows),
                                               groups=articles(rows))
        model.post_ = post.postprocess
        tracking.log_metrics({"final_fit_seconds": time.perf_counter() - fit_started})
        seed_scores = real_text_check(cfg, model, corpus.test)
        tracking.log_metrics(interval_metrics("seed_", seed_scores))
        log_article_reports(cfg, model)
        # save and register
        # ONNX files (transformer, embeddings) are kept only if they agree with torch on the training sentences
        check = CheckSet(texts, labels, [r.in_article for r in rows], context.for_rows(cfg.model.context, rows))
        model_dir = model.save(Path(cfg.output_dir) / run_id / "model", config=cfg.model_dump(mode="json"), check=check)
        tracking.log_metrics(onnx.metrics(model_dir))
        if (exported := onnx.summary(model_dir)) is not None:
            print(f"  {exported}", flush=True)
        example = pd.DataFrame({"text": texts[:3]})
        registered = cfg.tracking.registered_model
        info = tracking.log_model(model_dir, example, proba_frame(model.predict_proba(texts[:3])), registered)
        seconds = time.perf_counter() - started
        tracking.log_metrics({"train_seconds": seconds})
    version = str(info.registered_model_version) if registered and info.registered_model_version else None
    result = TrainResult(run_id, cfg.name, cfg.model.family, summary, seed_scores, fold_scores, references,
                         model_dir, info.model_uri, version, seconds, oof)
    print_summary(result)
    return result


def print_summary(result: TrainResult) -> None:
    def fmt(triple):
        return f"{triple[0]:.3f} [{triple[1]:.3f}, {triple[2]:.3f}]" if triple else "-"

    print(f"\n{result.name} ({result.family}), run {result.run_id}, {result.seconds:.1f} s")
    print(f"  {'out of fold':34}{'macro-F1':>24}{'accuracy':>24}")
    for prefix, what in (("article_", "article sentences"), ("isolated_", "isolated sentences"), ("", "all")):
        if prefix + "macro_f1" in result.cv:
            print(f"  {what:34}{fmt(result.cv[prefix + 'macro_f1']):>24}{fmt(result.cv[prefix + 'accuracy']):>24}")
    prefix = "article_" if "article_macro_f1" in result.cv else ""
    for kind, summary in result.references.items():
        print(f"  {'reference: ' + kind + (' (articles)' if prefix else ''):34}"
              f"{fmt(summary[prefix + 'macro_f1']):>24}{fmt(summary[prefix + 'accuracy']):>24}")
    if result.seed_scores:
        print(f"  {'seed articles (real text)':34}{fmt(result.seed_scores['macro_f1']):>24}"
              f"{fmt(result.seed_scores['accuracy']):>24}")
    registered = f", registered as version {result.model_version}" if result.model_version else ""
    print(f"  model: {result.model_dir} ({result.model_uri}{registered})")
