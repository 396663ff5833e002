"""Prediction speed of saved models: batch throughput, and `speechacts predict` from a cold start.

Usage: python bench/bench_predict.py --model outputs/<run>/model [--model DIR ...] [--sentences 50000]

For every model directory given (any family):
- throughput: the authored sentences repeated to --sentences (--hf-sentences for the Hugging
  Face families on a CPU), labelled in one batch by the Python API, best and median of
  --repeats; for the baseline also the time of each pipeline stage and a cProfile of one run,
  for the transformer and embeddings families the bare forward pass over the same batches;
- cold start: a fresh `speechacts predict ... "sentence"` process, from its start to the first
  JSON line on stdout, with --model DIR and with the default models:/speechacts-classifier@champion
  of a temporary SQLite store the model is registered in first (--cold-runs each, median);
- import times of the heavy modules (fresh interpreters), to say what a cold start waits for.
Each measurement also records how many CPU cores other processes kept busy meanwhile (from
/proc/stat), so a number taken on a shared machine says so.
Results go to bench/results/predict.json and a generated summary to bench/results/predict.md.
"""

from __future__ import annotations

import argparse
import cProfile
import csv
import io
import json
import logging
import os
import platform
import pstats
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
SPEECHACTS = Path(sys.executable).parent / "speechacts"
SENTENCE = "Russia denies any such plans and says it is responding to aggressive behaviour from NATO."
TARGETS = {"baseline": {"sentences_per_second": 50_000, "cold_start_s": 3.0},
           "transformer": {"forward_pass_share": 0.90, "cold_start_s": 6.0}}
IMPORTS = {"python (no imports)": "pass", "speechacts.cli": "import speechacts.cli",
           "scikit-learn (pipeline, text, linear_model)":
               "import sklearn.pipeline, sklearn.feature_extraction.text, sklearn.linear_model",
           "skops.io": "import skops.io", "mlflow": "import mlflow", "torch": "import torch",
           "transformers (+torch)": "import transformers, torch"}
HF_FAMILIES = ("transformer", "embeddings")


def machine() -> dict:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    mem_kib = next(int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines()
                   if line.startswith("MemTotal"))
    git = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT).stdout
    dirty = subprocess.run(["git", "status", "--porcelain"], capture_output=True, text=True, cwd=ROOT).stdout
    return {"nproc": len(os.sched_getaffinity(0)), "cpu": cpu, "memory_gib": round(mem_kib / 2**20, 1),
            "load_average_1_5_15": os.getloadavg(), "python": platform.python_version(),
            "platform": platform.platform(), "git_commit": git.strip() + ("-dirty" if dirty.strip() else "")}


def cpu_seconds() -> tuple[float, float]:
    """(CPU seconds used by the whole machine, by this process and its finished children) so far."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    busy = sum(fields) - fields[3] - fields[4]  # all but idle and iowait
    own = os.times()
    return busy / os.sysconf("SC_CLK_TCK"), own.user + own.system + own.children_user + own.children_system


def measured(fn, *args):
    """fn(*args) and the CPU cores other processes kept busy meanwhile (0 on a quiet machine)."""
    (machine_before, own_before), started = cpu_seconds(), time.perf_counter()
    result = fn(*args)
    (machine_after, own_after), wall = cpu_seconds(), time.perf_counter() - started
    others = max(0.0, (machine_after - machine_before) - (own_after - own_before)) / wall
    return result, round(others, 2)


def authored(n: int) -> list[str]:
    with open(ROOT / "data" / "authored.csv", encoding="utf-8", newline="") as f:
        texts = [row["text"] for row in csv.DictReader(f)]
    return (texts * (n // len(texts) + 1))[:n]


def timed(fn, repeats: int) -> list[float]:
    out = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        out.append(time.perf_counter() - started)
    return out


def rate(n: int, seconds: list[float]) -> dict:
    return {"sentences": n, "seconds": [round(s, 3) for s in seconds],
            "best_per_second": round(n / min(seconds)), "median_per_second": round(n / statistics.median(seconds))}


def baseline_stages(model, texts: list[str]) -> dict:
    """Seconds of each step of the baseline pipeline on the same batch."""
    pipeline = model.pipeline_
    stages, features = {}, []
    for name, branch in pipeline.named_steps["features"].transformer_list:
        started = time.perf_counter()
        counts = branch.named_steps["counts"].transform(texts)
        stages[f"{name} n-gram hashing"] = time.perf_counter() - started
        started = time.perf_counter()
        features.append(branch.named_steps["tfidf"].transform(counts))
        stages[f"{name} tf-idf"] = time.perf_counter() - started
    import scipy.sparse as sp

    joined = sp.hstack(features).tocsr()
    started = time.perf_counter()
    pipeline.named_steps["classifier"].predict_proba(joined)
    stages["logistic regression"] = time.perf_counter() - started
    total = sum(stages.values())
    return {name: {"seconds": round(s, 3), "share": round(s / total, 3)} for name, s in stages.items()}


def profile(fn, top: int = 10) -> list[dict]:
    profiler = cProfile.Profile()
    profiler.runcall(fn)
    stats = pstats.Stats(profiler, stream=io.StringIO())
    total = stats.total_tt
    rows = sorted(stats.stats.items(), key=lambda item: -item[1][2])[:top]
    return [{"function": f"{Path(file).name}:{line}({name})", "tottime_s": round(tt, 3), "share": round(tt / total, 3)}
            for (file, line, name), (_, _, tt, _, _) in rows]


def bare_forward(classifier, texts: list[str], repeats: int) -> dict | None:
    """The HF families' encoder forward pass alone over the same length-sorted batches, tokenised beforehand."""
    import torch

    from speechacts.models.hf import length_batches

    model = classifier.model
    if classifier.family == "transformer":
        net, tokenizer, batch_size, max_length = model.model_, model.tokenizer_, model.cfg.predict_batch_size, \
            model.cfg.max_length
    elif classifier.family == "embeddings":
        encoder = model.encoder_
        net, tokenizer, batch_size, max_length = encoder.model, encoder.tokenizer, encoder.batch_size, \
            encoder.max_length
    else:
        return None
    device = next(net.parameters()).device
    batches = [batch.to(device) for _, batch in length_batches(tokenizer, texts, batch_size, max_length)]

    def forward():
        with torch.inference_mode():
            for batch in batches:
                net(**batch)
        if device.type == "cuda":
            torch.cuda.synchronize()

    return rate(len(texts), timed(forward, repeats))


def throughput(classifier, n: int, repeats: int) -> dict:
    texts = authored(n)
    classifier.predict(texts[:256])  # warm-up
    clear = getattr(getattr(classifier.model, "encoder_", None), "cache", None)

    def run(fn):
        def call():
            if clear is not None:
                clear.clear()  # the embeddings family remembers vectors; measure the encoding
            fn(texts)
        return call

    result = {"distinct_sentences": len(set(texts)),
              "predict_proba": rate(n, timed(run(classifier.predict_proba), repeats)),
              "predict": rate(n, timed(run(classifier.predict), repeats))}
    if classifier.family == "baseline":
        result["stages"] = baseline_stages(classifier.model, texts)
        result["profile_top"] = profile(lambda: classifier.predict_proba(texts[:10_000]))
    bare = bare_forward(classifier, texts, repeats)
    if bare is not None:
        result["bare_forward"] = bare
        result["forward_pass_share"] = round(result["predict"]["best_per_second"] / bare["best_per_second"], 3)
    return result


def first_line_seconds(command: list[str], env: dict) -> float:
    """Seconds from starting a process to its first line on stdout; refuses a failed run."""
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    line = process.stdout.readline()
    seconds = time.perf_counter() - started
    _, err = process.communicate(timeout=300)
    if process.returncode != 0 or not line.startswith("{"):
        raise SystemExit(f"{' '.join(command)} failed ({process.returncode}): {err.strip()[-2000:]}")
    return seconds


def cold_start(args: list[str], runs: int, env: dict) -> dict:
    command = [str(SPEECHACTS), "predict", *args, SENTENCE]
    first_line_seconds(command, env)  # page cache warm: "cold" is the process, not the disk
    seconds = [first_line_seconds(command, env) for _ in range(runs)]
    return {"command": " ".join(["speechacts", "predict", *args, repr(SENTENCE)]),
            "seconds": [round(s, 3) for s in seconds], "median_s": round(statistics.median(seconds), 3),
            "min_s": round(min(seconds), 3)}


def register(classifier, folder: Path) -> str:
    """A temporary SQLite store with the model logged, registered and aliased @champion, as training leaves it."""
    import pandas as pd
    from mlflow.models import infer_signature

    from speechacts import tracking
    from speechacts.config import TrackingConfig
    from speechacts.serving import proba_frame

    cfg = TrackingConfig(uri=f"sqlite:///{folder / 'mlflow.db'}", experiment="bench")
    tracking.connect(cfg)
    example = pd.DataFrame({"text": [SENTENCE]})
    signature = infer_signature(example, proba_frame(classifier.predict_proba([SENTENCE])))
    with tracking.run("bench-register"):
        info = tracking.log_model(classifier.model_dir, example, signature, "speechacts-classifier")
    tracking.set_alias("speechacts-classifier", "champion", info.registered_model_version)
    return cfg.uri


def import_seconds(runs: int) -> dict:
    out = {}
    for name, statement in IMPORTS.items():
        seconds = timed(lambda s=statement: subprocess.run([sys.executable, "-c", s], check=True), runs)
        out[name] = round(statistics.median(seconds), 3)
    return out


def checks(family: str, record: dict) -> dict:
    target = TARGETS.get(family, {})
    out = {}
    if "sentences_per_second" in target:
        best = record["throughput"]["predict"]["best_per_second"]
        out["sentences_per_second"] = {"target": target["sentences_per_second"], "measured": best,
                                       "met": best >= target["sentences_per_second"]}
    if "forward_pass_share" in target and "forward_pass_share" in record["throughput"]:
        share = record["throughput"]["forward_pass_share"]
        out["forward_pass_share"] = {"target": target["forward_pass_share"], "measured": share,
                                     "met": share >= target["forward_pass_share"]}
    if "cold_start_s" in target:
        for key in ("cold_start_dir", "cold_start_registry"):
            median = record[key]["median_s"]
            out[key] = {"target_s": target["cold_start_s"], "measured_median_s": median,
                        "met": median <= target["cold_start_s"]}
    return out


def summary(results: dict) -> str:
    m = results["machine"]
    lines = ["# Prediction benchmark", "", f"Generated by `{results['command']}` on {results['date']}.", "",
             f"Machine: {m['nproc']} CPUs ({m['cpu']}), {m['memory_gib']} GiB RAM, Python {m['python']}, "
             f"commit {m['git_commit']}; load average (1, 5, 15 min) {m['load_average_1_5_15']} at the start, "
             f"{results['load_average_at_end']} at the end.", ""]
    for record in results["models"]:
        t = record["throughput"]
        lines += [f"## {record['family']}: {record['model_dir']}", "",
                  f"Other processes kept {record['other_processes_cores_during_throughput']} CPU cores busy during "
                  f"the throughput runs, {record['other_processes_cores_during_cold_starts']} during the cold starts "
                  "(0 is a quiet machine).", "",
                  f"- batch of {t['predict']['sentences']} sentences ({t['distinct_sentences']} distinct): "
                  f"`predict` best {t['predict']['best_per_second']:,}/s, "
                  f"median {t['predict']['median_per_second']:,}/s; "
                  f"`predict_proba` best {t['predict_proba']['best_per_second']:,}/s"]
        if "bare_forward" in t:
            lines.append(f"- bare forward pass best {t['bare_forward']['best_per_second']:,}/s; `predict` reaches "
                         f"{t['forward_pass_share']:.0%} of it")
        for key, label in (("cold_start_dir", "model directory"), ("cold_start_registry", "registry (SQLite)")):
            c = record[key]
            lines.append(f"- cold start, {label}: median {c['median_s']:.2f} s (min {c['min_s']:.2f} s, "
                         f"{len(c['seconds'])} runs): `{c['command']}`")
        for name, check in record["checks"].items():
            lines.append(f"- target {name}: {'met' if check['met'] else 'MISSED'} ({check})")
        if "stages" in t:
            lines += ["", "| baseline stage | seconds | share |", "|---|---|---|"]
            lines += [f"| {name} | {s['seconds']} | {s['share']:.0%} |" for name, s in t["stages"].items()]
            lines += ["", "| cProfile, 10,000 sentences: function | tottime s | share |", "|---|---|---|"]
            lines += [f"| `{p['function']}` | {p['tottime_s']} | {p['share']:.0%} |" for p in t["profile_top"]]
        lines.append("")
    lines += ["## Import times (fresh interpreter, median)", "",
              f"Other processes: {results['other_processes_cores_during_imports']} CPU cores busy.", "",
              "| import | seconds |", "|---|---|"]
    lines += [f"| {name} | {s} |" for name, s in results["import_seconds"].items()]
    return "\n".join(lines) + "\n"


def bench_model(model_dir: str, args: argparse.Namespace) -> dict:
    """Throughput and cold starts of one saved model, with how busy the machine was meanwhile."""
    from speechacts import load_classifier

    classifier = load_classifier(model_dir)
    n = args.hf_sentences if classifier.family in HF_FAMILIES else args.sentences
    print(f"{classifier.family} {model_dir}: throughput on {n} sentences ...", flush=True)
    record = {"model_dir": model_dir, "family": classifier.family}
    record["throughput"], record["other_processes_cores_during_throughput"] = measured(
        throughput, classifier, n, args.repeats)
    print("  cold starts ...", flush=True)
    env = {key: value for key, value in os.environ.items() if not key.startswith("MLFLOW_")}
    record["cold_start_dir"], busy_dir = measured(cold_start, ["--model", model_dir], args.cold_runs, env)
    with tempfile.TemporaryDirectory() as tmp:
        store = register(classifier, Path(tmp))
        record["cold_start_registry"], busy_registry = measured(
            cold_start, ["--tracking-uri", store], args.cold_runs, env)
        record["cold_start_registry"]["command"] = record["cold_start_registry"]["command"].replace(
            store, "sqlite:///<tmp>/mlflow.db")
    record["other_processes_cores_during_cold_starts"] = max(busy_dir, busy_registry)
    record["checks"] = checks(classifier.family, record)
    return record


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", action="append", required=True, help="a saved model directory; repeatable")
    parser.add_argument("--sentences", type=int, default=50_000)
    parser.add_argument("--hf-sentences", type=int, default=2_000, help="batch size for the transformer families")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--cold-runs", type=int, default=5)
    parser.add_argument("--out", type=Path, default=RESULTS / "predict.json")
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    logging.getLogger("mlflow").setLevel(logging.ERROR)
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    results = {"date": datetime.now(UTC).isoformat(timespec="seconds"), "machine": machine(),
               "command": " ".join(["python", *[str(a) for a in sys.argv]]), "models": []}
    for model_dir in args.model:
        results["models"].append(bench_model(model_dir, args))
    print("import times ...", flush=True)
    results["import_seconds"], results["other_processes_cores_during_imports"] = measured(import_seconds, 3)
    results["load_average_at_end"] = os.getloadavg()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    args.out.with_suffix(".md").write_text(summary(results), encoding="utf-8")
    print(summary(results))


if __name__ == "__main__":
    main()
