"""The compare job: an experiment's runs side by side, from the tracking store, with paired tests.

For each recipe, the newest finished run, ranked by out-of-fold macro-F1 on article sentences.
Runs whose folds digest matches the best run's are compared with it fold by fold (corrected
resampled t-test on article macro-F1); the references (majority class, stratified random,
always "assessment") come from the per-fold scores every run logs.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from speechacts import evaluation, tracking

OUTPUT_DIR = Path("outputs")


@dataclass
class Row:
    name: str
    family: str
    cv: tuple[float, float, float]  # the headline: out-of-fold macro-F1 on article sentences
    accuracy: float  # out-of-fold accuracy on article sentences
    isolated_f1: float | None
    seed_f1: float | None
    seconds: float | None
    folds: list[float]
    digest: str
    test_fraction: float
    diff: float | None = None
    p_value: float | None = None


def _get(run, key):
    value = run.get(key)
    return None if value is None or value != value else value  # NaN -> None


def headline_prefix(columns) -> str:
    """'article_' where the runs were scored on article sentences, else '' (all sentences)."""
    return "article_" if "article_macro_f1" in columns else ""


def collect(experiment: str, uri: str | None) -> list[Row]:
    runs = tracking.parent_runs(experiment, uri).drop_duplicates("tags.mlflow.runName")
    rows, references = [], {}
    for _, run in runs.iterrows():
        scores = tracking.read_csv_artifact(run["run_id"], "cv_scores.csv")
        prefix = headline_prefix(scores.columns)
        folds = int(_get(run, "params.evaluation.folds") or 5)
        own = scores[~scores["model"].str.startswith("reference:")]
        common = dict(digest=_get(run, "tags.folds_digest") or "?", test_fraction=1 / folds)
        cv = tuple(run[f"metrics.cv_{prefix}macro_f1{end}"] for end in ("", "_ci_low", "_ci_high"))
        rows.append(Row(run["tags.mlflow.runName"], _get(run, "tags.family") or "?", cv,
                        run[f"metrics.cv_{prefix}accuracy"], _get(run, "metrics.cv_isolated_macro_f1"),
                        _get(run, "metrics.seed_macro_f1"), _get(run, "metrics.train_seconds"),
                        list(own[f"{prefix}macro_f1"]), **common))
        for kind, group in scores[scores["model"].str.startswith("reference:")].groupby("model"):
            if (kind, common["digest"]) not in references:
                interval = evaluation.corrected_interval(list(group[f"{prefix}macro_f1"]),
                                                         common["test_fraction"], 0.95)
                isolated = float(group["isolated_macro_f1"].mean()) if "isolated_macro_f1" in group else None
                references[(kind, common["digest"])] = Row(kind, "reference", interval,
                                                           float(group[f"{prefix}accuracy"].mean()), isolated, None,
                                                           None, list(group[f"{prefix}macro_f1"]), **common)
    rows.sort(key=lambda r: -r.cv[0])
    best = rows[0]
    for row in rows[1:] + list(references.values()):
        if row.digest == best.digest and len(row.folds) == len(best.folds):
            row.diff, row.p_value = evaluation.paired_test(row.folds, best.folds, best.test_fraction)
    return rows + sorted(references.values(), key=lambda r: -r.cv[0])


def table(rows: list[Row]) -> str:
    head = (f"{'run':<30}{'family':<13}{'article macro-F1 [95% CI]':<27}{'accuracy':>9}{'isol. F1':>9}"
            f"{'seed F1':>9}{'train s':>9}{'vs best':>9}{'p':>8}")
    lines = [head, "-" * len(head)]

    def opt(value, spec):
        return format(value, spec) if value is not None else "-"

    for r in rows:
        cv = f"{r.cv[0]:.3f} [{r.cv[1]:.3f}, {r.cv[2]:.3f}]"
        diff = f"{r.diff:+.3f}" if r.diff is not None else ("best" if r is rows[0] else "n/a")
        p = f"{r.p_value:.3f}" if r.p_value is not None else ""
        lines.append(f"{r.name:<30}{r.family:<13}{cv:<27}{r.accuracy:>9.3f}{opt(r.isolated_f1, '.3f'):>9}"
                     f"{opt(r.seed_f1, '.3f'):>9}{opt(r.seconds, '.1f'):>9}{diff:>9}{p:>8}")
    return "\n".join(lines)


def run(experiment: str | None = None, tracking_uri: str | None = None) -> list[Row]:
    """Print the comparison table and write it as a plot; returns the rows."""
    from speechacts import plots
    from speechacts.config import TrackingConfig

    experiment = experiment or TrackingConfig().experiment
    rows = collect(experiment, tracking_uri)
    print(f"\nexperiment {experiment!r}: out-of-fold scores on article sentences, folds grouped by article, "
          "identical where the digest matches")
    print(table(rows))
    print("accuracy: on article sentences (compare reference:assessment, which always answers 'assessment'); "
          "isol. F1: macro-F1 on the isolated authored sentences; seed F1: the seed article, never trained on\n"
          "vs best: mean article macro-F1 difference to the best run over the same folds; p: corrected resampled "
          "t-test (Nadeau & Bengio); n/a: different folds, not paired")
    figure = plots.comparison_figure([r.name for r in rows], [r.cv[0] for r in rows], [r.cv[1] for r in rows],
                                     [r.cv[2] for r in rows], [r.seed_f1 for r in rows],
                                     f"experiment {experiment}: macro-F1")
    path = plots.save_figure(figure, OUTPUT_DIR / f"compare-{experiment}.png")
    print(f"plot: {path}")
    return rows
