"""Wall time and peak memory of whole training jobs (cross-validation, final fit, logging).

Usage: python bench/bench_train.py configs/baseline.yaml [configs/embeddings.yaml ...] [--repeat N]
Each recipe runs on the full corpus into a temporary MLflow store that exists before the clock
starts (creating the SQLite schema takes seconds and is paid once per store). Interpreter start
and imports are excluded: the clock covers `train.run(config)` only. Results are appended to
bench/results/train.jsonl with the machine and the date.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results" / "train.jsonl"
TARGETS = {"baseline": 15.0, "embeddings": 60.0, "transformer": 360.0}  # seconds on 2 cores


def machine() -> dict:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    import os

    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return {"cpu": cpu, "cores": os.cpu_count(), "memory_gib": round(mem, 1), "python": platform.python_version()}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("recipes", nargs="+")
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args()

    import warnings

    warnings.simplefilter("ignore")
    from speechacts import tracking, train
    from speechacts.config import load_config

    with tempfile.TemporaryDirectory() as tmp:
        store = f"sqlite:///{tmp}/mlflow.db"
        for recipe in args.recipes:
            overrides = [f"tracking.uri={store}", f"output_dir={tmp}/outputs", "tracking.experiment=bench"]
            cfg = load_config(recipe, overrides)
            tracking.connect(cfg.tracking)  # create the store before the clock starts
            for _ in range(args.repeat):
                started = time.perf_counter()
                result = train.run(cfg)
                seconds = time.perf_counter() - started
                peak_gib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
                record = {"date": datetime.now(UTC).isoformat(timespec="seconds"), "recipe": recipe,
                          "family": cfg.model.family, "seconds": round(seconds, 2),
                          "target_seconds": TARGETS.get(cfg.model.family), "peak_rss_gib": round(peak_gib, 2),
                          "cv_macro_f1": round(result.cv["macro_f1"][0], 4), "sentences": len(result.oof),
                          "folds": f"{cfg.evaluation.repeats}x{cfg.evaluation.folds}", "machine": machine(),
                          "command": " ".join(["python", *sys.argv])}
                print(json.dumps(record))
                RESULTS.parent.mkdir(parents=True, exist_ok=True)
                with open(RESULTS, "a", encoding="utf-8") as f:
                    f.write(json.dumps(record) + "\n")


if __name__ == "__main__":
    main()
