"""Wall time and peak memory of whole training jobs: one recipe, or a whole experiment file.

Usage:
    python bench/bench_train.py experiments/default.yaml            # the default job (make run)
    python bench/bench_train.py configs/baseline.yaml [configs/transformer.yaml ...] [--repeat N]
    python bench/bench_train.py experiments/default.yaml --set evaluation.folds=2   # overrides for every run
    python bench/bench_train.py ... --out /tmp/bench   # results elsewhere than bench/results/
    python bench/bench_train.py experiments/default.yaml --set tracking.uri=sqlite:///mlflow.db --set output_dir=outputs
        # `make run` timed, its runs and champion kept in the project's store

Each target runs on the full corpus into a temporary MLflow store that exists before the clock
starts (creating the SQLite schema takes seconds and is paid once per store). Interpreter start
and imports are excluded: the clock covers `train.run(config)` for a recipe, `experiment.run(file)`
for an experiment (every run, crowning and the comparison). Per run it records the job's seconds
and the final fit's (`final_fit_seconds`, the model trained on all training data). Results are
appended to bench/results/train.jsonl with the machine, the load and the date; bench/results/train.md
shows the latest invocation.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
TARGETS = {"transformer_final_fit": 600.0}  # seconds on 2 cores (issue 10: the shipped transformer's final fit)


def machine() -> dict:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return {"cpu": cpu, "cores": os.cpu_count(), "memory_gib": round(mem, 1), "python": platform.python_version()}


def commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "?"


def is_experiment(path: str) -> bool:
    from speechacts.config import read_yaml

    return "runs" in read_yaml(path)


def run_record(result, store: str, experiment: str) -> dict:
    """One trained run: its job seconds, final fit seconds and headline, read back from the store."""
    from speechacts import tracking

    runs = tracking.parent_runs(experiment, store)
    run = runs[runs["run_id"] == result.run_id].iloc[0]
    final_fit = float(run["metrics.final_fit_seconds"])
    record = {"run": result.name, "family": result.family, "seconds": round(result.seconds, 1),
              "final_fit_seconds": round(final_fit, 1), result.headline_metric: round(result.headline[0], 4)}
    if result.family == "transformer":
        target = TARGETS["transformer_final_fit"]
        record["final_fit_target_seconds"] = target
        record["final_fit_met"] = final_fit <= target
    return record


def bench(target: str, sets: list[str], tmp: str) -> dict:
    """Run one recipe or experiment into a fresh store under tmp; its record."""
    from speechacts import experiment, tracking, train
    from speechacts.config import TrackingConfig, load_config

    # a fresh store unless --set tracking.uri=... names one (e.g. the project's, to time `make run` and keep its models)
    store = next((s.split("=", 1)[1] for s in reversed(sets) if s.startswith("tracking.uri=")),
                 f"sqlite:///{tmp}/mlflow-{time.monotonic_ns()}.db")
    overrides = [f"tracking.uri={store}", f"output_dir={tmp}/outputs", *sets]
    tracking.connect(TrackingConfig(uri=store, experiment="bench"))  # create the store before the clock starts
    load = os.getloadavg()
    started = time.perf_counter()
    if is_experiment(target):
        cfgs = experiment.configs(experiment.load_spec(target), overrides)
        results = experiment.run(target, overrides)
    else:
        cfgs = [load_config(target, [*overrides, "tracking.experiment=bench"])]
        results = [train.run(cfgs[0])]
    seconds = time.perf_counter() - started
    return {"date": datetime.now(UTC).isoformat(timespec="seconds"), "target": target, "overrides": sets,
            "seconds": round(seconds, 1),
            "runs": [run_record(r, store, c.tracking.experiment) for r, c in zip(results, cfgs)],
            "peak_rss_gib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2),
            "load_average_start": [round(x, 2) for x in load],
            "load_average_end": [round(x, 2) for x in os.getloadavg()],
            "machine": machine(), "commit": commit(), "command": " ".join(["python", *sys.argv])}


def markdown(records: list[dict]) -> str:
    lines = ["# Training benchmark", "",
             f"Generated by `{records[0]['command']}` on {records[0]['date']}, commit {records[0]['commit']}.", "",
             "Machine: {cores} CPUs ({cpu}), {memory_gib} GiB RAM, Python {python}.".format(**records[0]['machine']),
             "Load average (1, 5, 15 min) at the start and end of each job: the job itself adds about 1-2 on "
             "2 cores; more means other processes shared the cores, and the seconds are upper bounds.", ""]
    for rec in records:
        extra = f" (overrides: {' '.join(rec['overrides'])})" if rec["overrides"] else ""
        lines += [f"## {rec['target']}{extra}", "",
                  f"Whole job: **{rec['seconds']:.0f} s**; peak RSS {rec['peak_rss_gib']} GiB; load "
                  f"{rec['load_average_start']} -> {rec['load_average_end']}.", "",
                  "| run | family | job s | final fit s | headline (out-of-fold) | final fit <= 600 s |",
                  "|---|---|---|---|---|---|"]
        for run in rec["runs"]:
            headline = next((f"{k} {v:.3f}" for k, v in run.items() if k.startswith("cv_")), "")
            met = {True: "met", False: "MISSED"}.get(run.get("final_fit_met"), "")
            lines.append(f"| {run['run']} | {run['family']} | {run['seconds']:.0f} | {run['final_fit_seconds']:.0f} "
                         f"| {headline} | {met} |")
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("targets", nargs="+", help="configs/*.yaml recipes or experiments/*.yaml files")
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--out", type=Path, default=RESULTS, help="folder for train.jsonl and train.md")
    parser.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                        help="an override for every run (repeatable), e.g. evaluation.folds=2")
    args = parser.parse_args()

    import warnings

    warnings.simplefilter("ignore")
    records = []
    with tempfile.TemporaryDirectory() as tmp:
        for target in args.targets:
            for _ in range(args.repeat):
                record = bench(target, args.sets, tmp)
                print(json.dumps(record), flush=True)
                args.out.mkdir(parents=True, exist_ok=True)
                with open(args.out / "train.jsonl", "a", encoding="utf-8") as f:
                    f.write(json.dumps(record) + "\n")
                records.append(record)
    (args.out / "train.md").write_text(markdown(records), encoding="utf-8")


if __name__ == "__main__":
    main()
