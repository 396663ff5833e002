"""The compare job: an experiment's runs side by side, from the tracking store, with paired tests.

For each recipe, the newest finished run. Runs whose folds digest matches the best run's are
compared with it fold by fold (corrected resampled t-test on macro-F1); the references
(majority class, stratified random) come from the per-fold scores every run logs.
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
    cv: tuple[float, float, float]
    accuracy: float
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


def collect(experiment: str, uri: str | None) -> list[Row]:
    runs = tracking.parent_runs(experiment, uri).drop_duplicates("tags.mlflow.runName")
    rows, references = [], {}
    for _, run in runs.iterrows():
        scores = tracking.read_csv_artifact(run["run_id"], "cv_scores.csv")
        folds = int(_get(run, "params.evaluation.folds") or 5)
        own = scores[~scores["model"].str.startswith("reference:")]
        common = dict(digest=_get(run, "tags.folds_digest") or "?", test_fraction=1 / folds)
        rows.append(Row(run["tags.mlflow.runName"], _get(run, "tags.family") or "?",
                        (run["metrics.cv_macro_f1"], run["metrics.cv_macro_f1_ci_low"],
                         run["metrics.cv_macro_f1_ci_high"]), run["metrics.cv_accuracy"],
                        _get(run, "metrics.seed_macro_f1"), _get(run, "metrics.train_seconds"),
                        list(own["macro_f1"]), **common))
        for kind, group in scores[scores["model"].str.startswith("reference:")].groupby("model"):
            if (kind, common["digest"]) not in references:
                mean, low, high = evaluation.corrected_interval(list(group["macro_f1"]), common["test_fraction"], 0.95)
                references[(kind, common["digest"])] = Row(kind, "reference", (mean, low, high),
                                                           float(group["accuracy"].mean()), None, None,
                                                           list(group["macro_f1"]), **common)
    rows.sort(key=lambda r: -r.cv[0])
    best = rows[0]
    for row in rows[1:] + list(references.values()):
        if row.digest == best.digest and len(row.folds) == len(best.folds):
            row.diff, row.p_value = evaluation.paired_test(row.folds, best.folds, best.test_fraction)
    return rows + sorted(references.values(), key=lambda r: -r.cv[0])


def table(rows: list[Row]) -> str:
    head = (f"{'run':<24}{'family':<13}{'CV macro-F1 [95% CI]':<26}{'accuracy':>9}{'seed F1':>9}"
            f"{'train s':>9}{'vs best':>9}{'p':>8}")
    lines = [head, "-" * len(head)]
    for r in rows:
        cv = f"{r.cv[0]:.3f} [{r.cv[1]:.3f}, {r.cv[2]:.3f}]"
        seed = f"{r.seed_f1:.3f}" if r.seed_f1 is not None else "-"
        secs = f"{r.seconds:.1f}" if r.seconds is not None else "-"
        diff = f"{r.diff:+.3f}" if r.diff is not None else ("best" if r is rows[0] else "n/a")
        p = f"{r.p_value:.3f}" if r.p_value is not None else ""
        lines.append(f"{r.name:<24}{r.family:<13}{cv:<26}{r.accuracy:>9.3f}{seed:>9}{secs:>9}{diff:>9}{p:>8}")
    return "\n".join(lines)


def run(experiment: str | None = None, tracking_uri: str | None = None) -> list[Row]:
    """Print the comparison table and write it as a plot; returns the rows."""
    from speechacts import plots
    from speechacts.config import TrackingConfig

    experiment = experiment or TrackingConfig().experiment
    rows = collect(experiment, tracking_uri)
    print(f"\nexperiment {experiment!r}: cross-validated on identical folds where the digest matches")
    print(table(rows))
    print("vs best: mean macro-F1 difference to the best run over the same folds; p: corrected resampled "
          "t-test (Nadeau & Bengio); n/a: different folds, not paired")
    figure = plots.comparison_figure([r.name for r in rows], [r.cv[0] for r in rows], [r.cv[1] for r in rows],
                                     [r.cv[2] for r in rows], [r.seed_f1 for r in rows],
                                     f"experiment {experiment}: macro-F1")
    path = plots.save_figure(figure, OUTPUT_DIR / f"compare-{experiment}.png")
    print(f"plot: {path}")
    return rows
