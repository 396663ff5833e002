"""Labelling speed of a corpus of articles: in one process, and on Spark (`speechacts label`), same corpus.

Usage: python bench/bench_label.py [--model DIR ...] [--repeat-baseline 10] [--repeat-transformer 1]
                                   [--master local[2]]

The corpus is data/articles/*.txt (the authored reports), repeated (each copy a new id) and written
as JSON lines. For each model:
- in-process: the Python API over the corpus in the batches Spark uses (label.label_frame on
  ARTICLES_PER_BATCH articles at a time), one process, torch on every core; for the Hugging Face
  families also with torch on one thread, as each Spark task runs it;
- Spark: one session on --master, and in it the labelling job (label.run: from reading the corpus
  to the last Parquet file written) twice: cold (Python workers start, import the project, load
  the model) and warm (workers reused); the estimate for an archive uses the warm rate.
Without --model, it fits speed stand-ins of two families on a few authored sentences: the baseline
(configs/baseline.yaml's model) and the transformer (the packaged all-MiniLM-L6-v2, 1 epoch);
their labels are poor, but prediction costs the same as a trained model's.
Each measurement also records how many CPU cores other processes kept busy meanwhile.
Results: bench/results/label.json and bench/results/label.md, with a worked estimate for
1M articles of ~30 sentences on N executors.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import warnings
from datetime import UTC, datetime
from pathlib import Path

from bench_predict import machine

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
ARCHIVE_ARTICLES, SENTENCES_PER_ARTICLE = 1_000_000, 30
EXECUTORS, CORES_PER_EXECUTOR = (1, 10, 50, 100), 4


def tree_cpu_seconds() -> float:
    """CPU seconds of this process and its descendants (the Spark JVM, its Python workers), running or ended."""
    import psutil

    total = 0.0
    for process in [psutil.Process()] + psutil.Process().children(recursive=True):
        try:
            times = process.cpu_times()  # children_*: its children that have ended
            total += times.user + times.system + times.children_user + times.children_system
        except psutil.NoSuchProcess:
            pass
    return total


def machine_cpu_seconds() -> float:
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    return (sum(fields) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")  # all but idle and iowait


def measured(fn, *args):
    """fn(*args), and the CPU cores that processes outside this one's tree kept busy meanwhile (0: quiet)."""
    machine_before, own_before, started = machine_cpu_seconds(), tree_cpu_seconds(), time.perf_counter()
    result = fn(*args)
    machine_after, own_after, wall = machine_cpu_seconds(), tree_cpu_seconds(), time.perf_counter() - started
    own = own_after - own_before
    return result, {"other_processes_cores": round(max(0.0, machine_after - machine_before - own) / wall, 2),
                    "own_cores": round(own / wall, 2), "own_cpu_seconds": round(own, 2)}


def corpus(folder: Path, repeat: int) -> tuple[Path, list[dict]]:
    """data/articles/*.txt repeated `repeat` times as JSON lines; (path, records)."""
    records = [{"id": f"{path.stem}#{k}", "text": path.read_text(encoding="utf-8"), "source": "authored"}
               for k in range(repeat) for path in sorted((ROOT / "data" / "articles").glob("*.txt"))]
    path = folder / f"articles-x{repeat}.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path, records


def stand_ins(folder: Path) -> list[str]:
    """A baseline and a transformer fitted on 25 authored sentences, saved; for speed only."""
    import csv

    from speechacts.classifier import build
    from speechacts.config import BaselineModel, TransformerModel

    with open(ROOT / "data" / "authored.csv", encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    picked = [r for label in {r["label"] for r in rows} for r in [x for x in rows if x["label"] == label][:5]]
    texts, labels = [r["text"] for r in picked], [r["label"] for r in picked]
    dirs = []
    for cfg in (BaselineModel(), TransformerModel(epochs=1, device="cpu")):
        model = build(cfg, seed=13).fit(texts, labels)
        dirs.append(str(model.save(folder / cfg.family, config={"name": f"speed-{cfg.family}",
                                                                  "model": cfg.model_dump(mode="json")})))
    return dirs


def in_process(model_dir: str, records: list[dict], torch_threads: int | None = None) -> dict:
    """The Python API in this process; torch_threads: torch's thread count (default: torch's own, every core)."""
    import pandas as pd

    from speechacts import label
    from speechacts.api import load_classifier

    classifier = load_classifier(model_dir)
    frame = pd.DataFrame(records)[["id", "text"]]
    if torch_threads:
        import torch

        default = torch.get_num_threads()
        torch.set_num_threads(torch_threads)

    def work():
        return sum(len(label.label_frame(classifier, frame.iloc[i:i + label.ARTICLES_PER_BATCH], model_dir, None))
                   for i in range(0, len(frame), label.ARTICLES_PER_BATCH))

    started = time.perf_counter()
    sentences, cpu = measured(work)
    seconds = time.perf_counter() - started
    if torch_threads:
        torch.set_num_threads(default)
    return {"family": classifier.family, "torch_threads": torch_threads, "sentences": sentences,
            "seconds": round(seconds, 2),
            "sentences_per_second": round(sentences / seconds, 1),
            "sentences_per_cpu_second": round(sentences / cpu["own_cpu_seconds"], 1), **cpu}


def on_spark(model_dir: str, path: Path, master: str, out: Path) -> dict:
    """Start a session, label the corpus twice in it (cold: Python workers start and import; warm: reused)."""
    from speechacts import label

    started = time.perf_counter()
    spark, _ = label.session(master)
    record = {"master": master, "session_start_seconds": round(time.perf_counter() - started, 2)}
    try:
        for run in ("cold", "warm"):
            result, cpu = measured(label.run, path, out, model_dir, None, master, None, True)
            record[run] = {"sentences": result.sentences, "articles": result.articles,
                           "job_seconds": round(result.seconds, 2),
                           "sentences_per_second": round(result.sentences / result.seconds, 1),
                           "sentences_per_cpu_second": round(result.sentences / cpu["own_cpu_seconds"], 1), **cpu}
    finally:
        spark.stop()
    return record


def estimate(spark: dict) -> dict:
    """Hours for the archive on N executors, from the warm Spark job's sentences per CPU-second.

    Per CPU-second, not per second: on a shared machine the wall-clock rate says how busy the others
    were; the CPU time the job's own processes (driver, JVM, Python workers) spent is what a core of
    an executor would spend."""
    per_core = spark["warm"]["sentences_per_cpu_second"]
    sentences = ARCHIVE_ARTICLES * SENTENCES_PER_ARTICLE
    return {"sentences": sentences, "per_core_per_second": per_core,
            "hours_on_executors": {f"{n} x {CORES_PER_EXECUTOR} cores":
                                   round(sentences / (per_core * n * CORES_PER_EXECUTOR) / 3600, 2)
                                   for n in EXECUTORS}}


def summary(results: dict) -> str:
    m = results["machine"]
    lines = ["# Labelling benchmark", "",
             f"Generated by `{results['command']}` on {results['date']}.", "",
             f"Machine: {m['nproc']} CPUs ({m['cpu']}), {m['memory_gib']} GiB RAM, Python {m['python']}, "
             f"commit {m['git_commit']}; load average (1, 5, 15 min) "
             f"{tuple(round(x, 2) for x in m['load_average_1_5_15'])} "
             "at the start. `cores busy` is how many CPU cores the measured process and its children (Spark's JVM "
             "and Python workers) kept busy, and how many all other processes did (0 is a quiet machine).", "",
             "Spark: `session` is starting a Spark session (the JVM starts once per process, so only the first "
             "model's includes it); `cold` the first job in it (Python workers start, import the "
             "project and load the model), `warm` the same job again in the same session (workers reused).", "",
             "Each rate is sentences per second of wall-clock time, then per CPU-second of the job's own processes.",
             "",
             "| model | corpus | in-process sentences/s | Spark session | Spark cold job sentences/s "
             "| Spark warm job sentences/s | warm Spark / in-process "
             "| cores busy: own / others' (in-process; cold; warm) |",
             "|---|---|---|---|---|---|---|---|"]
    for r in results["models"]:
        i, s = r["in_process"], r["spark"]
        cold, warm = s["cold"], s["warm"]
        lines.append(f"| {i['family']} | {warm['articles']} articles, {warm['sentences']} sentences | "
                     f"{i['sentences_per_second']:,.0f}, {i['sentences_per_cpu_second']:,.0f} ({i['seconds']} s) | "
                     f"{s['session_start_seconds']} s | "
                     f"{cold['sentences_per_second']:,.0f}, {cold['sentences_per_cpu_second']:,.0f} "
                     f"({cold['job_seconds']} s) | "
                     f"{warm['sentences_per_second']:,.0f}, {warm['sentences_per_cpu_second']:,.0f} "
                     f"({warm['job_seconds']} s) | "
                     f"{warm['sentences_per_second'] / i['sentences_per_second']:.2f}, "
                     f"{warm['sentences_per_cpu_second'] / i['sentences_per_cpu_second']:.2f} | "
                     + "; ".join(f"{x['own_cores']} / {x['other_processes_cores']}" for x in (i, cold, warm))
                     + " |")
    for r in results["models"]:
        if "in_process_1_thread" in r:
            one = r["in_process_1_thread"]
            lines.append(f"\n{one['family']} in-process with torch on 1 thread: {one['sentences_per_second']:,.0f} "
                         f"sentences/s, {one['sentences_per_cpu_second']:,.0f} per CPU-second ({one['seconds']} s; "
                         f"cores busy {one['own_cores']} / {one['other_processes_cores']}); Spark runs each task's "
                         "torch on its task's cores (1 here).")
    lines += ["", f"## Estimate: {ARCHIVE_ARTICLES:,} articles of ~{SENTENCES_PER_ARTICLE} sentences", "",
              "A rate per core is the warm Spark job's sentences per CPU-second of its own processes (driver, "
              "JVM, Python workers): on a shared machine the wall-clock rate measures the neighbours too. The job "
              "is a map with no shuffle but the initial repartition, so it scales with cores until the storage or "
              "the driver limits it: hours = sentences / (rate per core x executors x cores each), for cores like "
              "this machine's, plus a minute or two to start executors and load the model on each.", ""]
    for r in results["models"]:
        e = r["estimate"]
        cells = "; ".join(f"{k}: {v} h" for k, v in e["hours_on_executors"].items())
        lines.append(f"- {r['in_process']['family']}: {e['per_core_per_second']} sentences per CPU-second; "
                     f"{e['sentences']:,} sentences: {cells}")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", action="append", default=[], help="a saved model directory (repeatable)")
    parser.add_argument("--repeat-baseline", type=int, default=10, help="copies of the corpus for the baseline")
    parser.add_argument("--repeat-transformer", type=int, default=1, help="copies for the Hugging Face families")
    parser.add_argument("--master", default="local[2]")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from speechacts.api import load_classifier

    results = {"command": " ".join(["python bench/bench_label.py", *sys.argv[1:]]),
               "date": datetime.now(UTC).isoformat(timespec="seconds"), "machine": machine(),
               "master": args.master, "models": []}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model_dirs = args.model or stand_ins(tmp / "models")
        for model_dir in model_dirs:
            family = load_classifier(model_dir).family
            repeat = args.repeat_baseline if family == "baseline" else args.repeat_transformer
            path, records = corpus(tmp, repeat)
            record = {"model": model_dir if args.model else f"speed stand-in ({family})", "repeat": repeat,
                      "in_process": in_process(model_dir, records),
                      "spark": on_spark(model_dir, path, args.master, tmp / "out")}
            if family != "baseline":  # is the difference torch's threads? the same with one thread
                record["in_process_1_thread"] = in_process(model_dir, records, torch_threads=1)
            record["estimate"] = estimate(record["spark"])
            print(json.dumps(record), flush=True)
            results["models"].append(record)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "label.json").write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    (RESULTS / "label.md").write_text(summary(results), encoding="utf-8")
    print(summary(results))


if __name__ == "__main__":
    main()
