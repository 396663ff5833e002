"""The table of experiments/results/transformer_tuning.md: each run against a reference run, paired
fold by fold, and the seed average scored offline from the runs' out-of-fold predictions.

Usage:
    python experiments/tuning_table.py --tracking-uri sqlite:////tmp/t10/mlflow.db \\
        --experiment speechacts-transformer-tuning --reference reference \\
        [--add sqlite:///mlflow.db speechacts transformer "make run"] \\
        [--average reference,model-seed14,model-seed15]

A run counts once its cross-validation is logged (cv_scores.csv), even if the final fit was cut
short (then `final fit s` is empty). The average of several runs (same folds, other model seeds)
is the mean of their shipped out-of-fold probabilities (each run's own prior and temperature),
scored with the project's functions: evaluation.subset_scores per fold, the corrected interval,
the corrected paired t-test against the reference, and calibration's ECE.
"""

from __future__ import annotations

import argparse

import mlflow
import numpy as np

from speechacts import calibration, evaluation, tracking
from speechacts.data import ISOLATED
from speechacts.labels import LABELS

CONFIDENCE = 0.95


class Kind:
    """What subset_scores needs of a row."""

    def __init__(self, kind: str):
        self.in_article = kind != ISOLATED


def score_oof(frame) -> tuple[list[float], dict[str, float]]:
    """Per-fold article macro-F1 of an out-of-fold frame, and its article accuracy and ECE."""
    proba_cols = [f"p_{label}" for label in LABELS]
    folds, accuracy = [], []
    for _, fold in frame.groupby(["repeat", "fold"]):
        predicted = [LABELS[i] for i in fold[proba_cols].to_numpy().argmax(axis=1)]
        s = evaluation.subset_scores([Kind(k) for k in fold["kind"]], list(fold["true"]), predicted)
        folds.append(s["article_macro_f1"])
        accuracy.append(s["article_accuracy"])
    articles = frame[frame["kind"] != ISOLATED]
    ece = calibration.expected_calibration_error(articles[proba_cols].to_numpy(), list(articles["true"]))
    return folds, {"accuracy": float(np.mean(accuracy)), "ece": ece}


def collect(uri: str, experiment: str, only: list[str] | None = None) -> dict:
    """{run name: (fold scores, extras, final fit seconds, status, out-of-fold frame, folds digest)} of
    the newest run of each name whose cross-validation is logged."""
    mlflow.set_tracking_uri(uri)
    found = mlflow.get_experiment_by_name(experiment)
    runs = mlflow.search_runs([found.experiment_id], filter_string="tags.mlflow.parentRunId IS NULL",
                              order_by=["attributes.start_time DESC"]).drop_duplicates("tags.mlflow.runName")
    table = {}
    for _, run in runs.iterrows():
        name = run["tags.mlflow.runName"]
        if only and name not in only:
            continue
        try:
            frame = tracking.read_csv_artifact(run["run_id"], "predictions/oof_predictions.csv")
        except Exception:  # noqa: BLE001 - cross-validation not finished: no row
            continue
        folds, extra = score_oof(frame)
        fit = run.get("metrics.final_fit_seconds")
        table[name] = (folds, extra, None if fit is None or fit != fit else float(fit), run["status"], frame,
                       run["tags.folds_digest"])
    return table


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tracking-uri", required=True)
    parser.add_argument("--experiment", required=True)
    parser.add_argument("--reference", required=True, help="the run every other is paired with")
    parser.add_argument("--add", nargs=4, action="append", default=[], metavar=("URI", "EXPERIMENT", "RUN", "AS"),
                        help="a run of another store or experiment, shown as AS (e.g. the make run's transformer)")
    parser.add_argument("--average", default=None, help="comma-separated runs whose probabilities are averaged")
    args = parser.parse_args()

    table = {}
    for uri, experiment, run, alias in args.add:
        found = collect(uri, experiment, [run])
        if run not in found:
            raise SystemExit(f"error: no cross-validated run {run!r} in experiment {experiment!r} of {uri}")
        table[alias] = found[run]
    table |= collect(args.tracking_uri, args.experiment)
    if args.average:
        names = args.average.split(",")
        missing = [n for n in names if n not in table]
        if missing:
            raise SystemExit(f"error: no out-of-fold predictions for {missing}; have {sorted(table)}")
        if len({table[n][5] for n in names}) != 1:
            raise SystemExit(f"error: {names} were not cross-validated on the same folds")
        key = ["id", "repeat"]
        cols = [f"p_{label}" for label in LABELS]
        average = table[names[0]][4].sort_values(key).reset_index(drop=True)
        average[cols] = np.mean([table[n][4].sort_values(key)[cols].to_numpy() for n in names], axis=0)
        folds, extra = score_oof(average)
        table[f"mean of {len(names)} seeds"] = (folds, extra, None, "offline", average, table[names[0]][5])
    digest = table[args.reference][5]
    reference = table[args.reference][0]
    test_fraction = 1 / len(reference)  # k folds: each tests 1/k of the rows
    print(f"folds digest of the reference: {digest}")
    print("| run | article macro-F1 [95% CI] | per fold | accuracy | ECE (calibrated) | vs reference | p "
          "| final fit s |")
    print("|---|---|---|---|---|---|---|---|")
    for name, (folds, extra, fit, status, _, run_digest) in table.items():
        mean, low, high = evaluation.corrected_interval(folds, test_fraction, CONFIDENCE)
        if name == args.reference:
            diff, p = "reference", ""
        elif run_digest != digest:
            diff, p = "other folds", ""
        else:
            d, pv = evaluation.paired_test(folds, reference, test_fraction)
            diff, p = f"{d:+.3f}", f"{pv:.2f}"
        fit_text = f"{fit:.0f}" if fit is not None else f"({status.lower()})"
        print(f"| {name} | {mean:.3f} [{low:.3f}, {high:.3f}] | {' / '.join(f'{f:.3f}' for f in folds)} "
              f"| {extra['accuracy']:.3f} | {extra['ece']:.3f} | {diff} | {p} | {fit_text} |")


if __name__ == "__main__":
    main()
