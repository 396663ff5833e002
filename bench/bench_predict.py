"""Prediction speed of saved models: throughput by runtime, and `speechacts predict` from a cold start.

Usage: python bench/bench_predict.py --model outputs/<run>/model [--model DIR ...] [--sentences 50000]

For every model directory given (any family):
- throughput of the transformer and embeddings families, at batch 1 and batch 32 on the same
  sentences (the authored sentences, --hf-sentences at batch 32, --single-sentences at batch 1),
  best of --repeats, as ratios against the bare fp32 torch forward pass over the same
  length-sorted batches tokenised beforehand: `predict_proba` on torch, on ONNX fp32 and on
  ONNX int8 (each file the model's export kept); for the baseline, sentences per second over
  --sentences, the time of each pipeline stage and a cProfile of one run;
- cold start: a fresh `speechacts predict --runtime R ... "sentence"` process, for each runtime
  the model has (torch, onnx), from its start to the first JSON line on stdout, with --model DIR
  and with the default models:/speechacts-classifier@champion of a temporary SQLite store the
  model is registered in first (--cold-runs each, median), and the peak resident memory of that
  process;
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
# issue 13: int8 batch throughput >= 2.5x the bare fp32 forward; cold start from the registry <= 2 s
# (transformer) and <= 1.5 s (baseline); the baseline >= 50,000 sentences/s
TARGETS = {"baseline": {"sentences_per_second": 50_000, "cold_start_registry_s": 1.5},
           "transformer": {"int8_batch_ratio": 2.5, "cold_start_registry_s": 2.0}}
BATCH_SIZES = (1, 32)
IMPORTS = {"python (no imports)": "pass", "speechacts.cli": "import speechacts.cli",
           "scikit-learn (pipeline, text, linear_model)":
               "import sklearn.pipeline, sklearn.feature_extraction.text, sklearn.linear_model",
           "skops.io": "import skops.io", "mlflow": "import mlflow", "torch": "import torch",
           "transformers (+torch)": "import transformers, torch", "onnxruntime": "import onnxruntime",
           "tokenizers": "import tokenizers", "speechacts.models.onnx": "import speechacts.models.onnx"}
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


def profile(fn, top: int = 10) -> list[dict]:
    profiler = cProfile.Profile()
    profiler.runcall(fn)
    stats = pstats.Stats(profiler, stream=io.StringIO())
    total = stats.total_tt
    rows = sorted(stats.stats.items(), key=lambda item: -item[1][2])[:top]
    return [{"function": f"{Path(file).name}:{line}({name})", "tottime_s": round(tt, 3), "share": round(tt / total, 3)}
            for (file, line, name), (_, _, tt, _, _) in rows]


def network(model):
    """(torch module, tokenizer, max_length) of a transformer or embeddings model loaded on torch."""
    if model.family == "transformer":
        return model.model_, model.tokenizer_, model.cfg.max_length
    return model.encoder_.model, model.encoder_.tokenizer, model.encoder_.max_length


def bare_forward(model, texts: list[str], batch_size: int, repeats: int) -> dict:
    """The torch network's fp32 forward pass alone over the length-sorted batches, tokenised beforehand."""
    import torch

    from speechacts.models.hf import length_batches

    net, tokenizer, max_length = network(model)
    batches = [batch.to("cpu") for _, batch in length_batches(tokenizer, texts, batch_size, max_length)]

    def forward():
        with torch.inference_mode():
            for batch in batches:
                net(**batch)

    forward()  # warm-up
    return rate(len(texts), timed(forward, repeats))


def at_batch(model, batch_size: int):
    """The same model predicting batch_size sentences at a time."""
    key = "predict_batch_size" if model.family == "transformer" else "batch_size"
    model.cfg = model.cfg.model_copy(update={key: batch_size})
    target = getattr(model, "network", None) or getattr(getattr(model, "encoder_", None), "network", None) \
        or getattr(model, "encoder_", None)
    if target is not None and hasattr(target, "batch_size"):
        target.batch_size = batch_size
    return model


def runtimes(model_dir: Path, torch_model, scratch: Path) -> dict:
    """The model on torch, ONNX fp32 and ONNX int8. An int8 file the export check refused (or never
    wrote) is quantized again here from the fp32 file, in scratch, so its speed is still measured."""
    import shutil

    from speechacts.models import onnx

    out = {"torch": torch_model}
    folder = model_dir / onnx.weights_dir(torch_model.family)
    if (folder / onnx.FP32).is_file() and not (folder / onnx.INT8).is_file() and not (scratch / onnx.INT8).is_file():
        for name in ("tokenizer.json", "tokenizer_config.json"):
            shutil.copy(folder / name, scratch / name)
        onnx.quantize(folder / onnx.FP32, scratch / onnx.INT8)
    for kind, file in (("onnx_fp32", folder / onnx.FP32), ("onnx_int8", folder / onnx.INT8),
                       ("onnx_int8", scratch / onnx.INT8)):
        if file.is_file() and kind not in out:
            out[kind] = onnx.runner(torch_model.family, torch_model.cfg, file, getattr(torch_model, "head_", None))
            out[kind].post_ = torch_model.post_
    return out


def hf_throughput(model_dir: Path, args: argparse.Namespace) -> dict:
    """Sentences per second of each runtime at batch 1 and 32, and its ratio to the bare fp32 forward."""
    from speechacts.classifier import load_model
    from speechacts.models import onnx

    result = {"int8_kept_by_export_check": (model_dir / onnx.weights_dir(load_model(model_dir, "torch").family)
                                            / onnx.INT8).is_file()}
    scratch = Path(tempfile.mkdtemp(prefix="bench-int8-"))
    for batch_size in BATCH_SIZES:
        texts = authored(args.single_sentences if batch_size == 1 else args.hf_sentences)
        torch_model = load_model(model_dir, "torch")
        models = {name: at_batch(m, batch_size) for name, m in runtimes(model_dir, torch_model, scratch).items()}
        bare = bare_forward(torch_model, texts, batch_size, args.repeats)
        row = {"sentences": len(texts), "bare_fp32_forward": bare}
        for name, model in models.items():
            cache = getattr(getattr(model, "encoder_", None), "cache", None)

            def call(model=model, cache=cache, texts=texts):
                if cache is not None:
                    cache.clear()  # the embeddings family remembers vectors; measure the encoding
                model.predict_proba(texts)

            call()  # warm-up
            measured_rate = rate(len(texts), timed(call, args.repeats))
            row[name] = {**measured_rate,
                         "ratio_to_bare_forward": round(measured_rate["best_per_second"] / bare["best_per_second"], 2)}
        result[f"batch_{batch_size}"] = row
    return result


def baseline_throughput(classifier, n: int, repeats: int) -> dict:
    texts = authored(n)
    classifier.predict(texts[:256])  # warm-up
    result = {"distinct_sentences": len(set(texts)),
              "predict_proba": rate(n, timed(lambda: classifier.predict_proba(texts), repeats)),
              "predict": rate(n, timed(lambda: classifier.predict(texts), repeats))}
    result["profile_top"] = profile(lambda: classifier.predict_proba(texts[:10_000]))
    return result


# Runs a command and prints its peak resident memory in KiB. A small process of its own, because a
# child forked by this one starts with this one's pages resident, and ru_maxrss would count them.
PEAK_RSS = "import os, sys; pid = os.fork() or os.execvp(sys.argv[1], sys.argv[1:]); " \
           "_, status, usage = os.wait4(pid, 0); print(usage.ru_maxrss, file=sys.stderr); " \
           "sys.exit(os.waitstatus_to_exitcode(status))"


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


def peak_rss_mib(command: list[str], env: dict) -> float:
    out = subprocess.run([sys.executable, "-c", PEAK_RSS, *command], capture_output=True, text=True, env=env,
                         timeout=300, check=True)
    return round(int(out.stderr.strip().splitlines()[-1]) / 1024, 1)


def cold_start(args: list[str], runs: int, env: dict) -> dict:
    command = [str(SPEECHACTS), "predict", *args, SENTENCE]
    first_line_seconds(command, env)  # page cache warm: "cold" is the process, not the disk
    seconds = [first_line_seconds(command, env) for _ in range(runs)]
    return {"command": " ".join(["speechacts", "predict", *args, repr(SENTENCE)]),
            "seconds": [round(s, 3) for s in seconds], "median_s": round(statistics.median(seconds), 3),
            "min_s": round(min(seconds), 3), "peak_rss_mib": peak_rss_mib(command, env)}


def register(classifier, folder: Path) -> str:
    """A temporary SQLite store with the model logged, registered and aliased @champion, as training leaves it."""
    import pandas as pd

    from speechacts import tracking
    from speechacts.config import TrackingConfig
    from speechacts.serving import proba_frame

    cfg = TrackingConfig(uri=f"sqlite:///{folder / 'mlflow.db'}", experiment="bench")
    tracking.connect(cfg)
    example = pd.DataFrame({"text": [SENTENCE]})
    with tracking.run("bench-register"):
        info = tracking.log_model(classifier.model_dir, example, proba_frame(classifier.predict_proba([SENTENCE])),
                                  "speechacts-classifier")
    tracking.set_alias("speechacts-classifier", "champion", info.registered_model_version)
    return cfg.uri


def import_seconds(runs: int) -> dict:
    out = {}
    for name, statement in IMPORTS.items():
        seconds = timed(lambda s=statement: subprocess.run([sys.executable, "-c", s], check=True), runs)
        out[name] = round(statistics.median(seconds), 3)
    return out


def checks(family: str, record: dict) -> dict:
    """Each target of the family: met or missed, with the measured figure."""
    target = TARGETS.get(family, {})
    out = {}
    if "sentences_per_second" in target:
        best = record["throughput"]["predict"]["best_per_second"]
        out["sentences_per_second"] = {"target": target["sentences_per_second"], "measured": best,
                                       "met": best >= target["sentences_per_second"]}
    int8 = record["throughput"].get("batch_32", {}).get("onnx_int8")
    if "int8_batch_ratio" in target:
        ratio = int8["ratio_to_bare_forward"] if int8 else None
        out["int8_batch_ratio"] = {"target": target["int8_batch_ratio"], "measured": ratio,
                                   "met": ratio is not None and ratio >= target["int8_batch_ratio"]}
    if "cold_start_registry_s" in target:
        fastest = min(c["median_s"] for key, c in record["cold_starts"].items() if key.endswith("registry"))
        out["cold_start_registry_s"] = {"target": target["cold_start_registry_s"], "measured_median": fastest,
                                        "met": fastest <= target["cold_start_registry_s"]}
    return out


def start_record() -> dict:
    """Quiet the libraries' chatter and begin a record: date, machine and the command line."""
    warnings.simplefilter("ignore")
    logging.getLogger("mlflow").setLevel(logging.ERROR)
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    return {"date": datetime.now(UTC).isoformat(timespec="seconds"), "machine": machine(),
            "command": " ".join(["python", *[str(a) for a in sys.argv]])}


def save(results: dict, out: Path, render) -> None:
    """Write the record as out (JSON) and its rendering as out with .md; print the rendering."""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    text = render(results)
    out.with_suffix(".md").write_text(text, encoding="utf-8")
    print(text)


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
                  "(0 is a quiet machine).", ""]
        if "predict" in t:
            lines += [f"- batch of {t['predict']['sentences']} sentences ({t['distinct_sentences']} distinct): "
                      f"`predict` best {t['predict']['best_per_second']:,}/s, "
                      f"median {t['predict']['median_per_second']:,}/s; "
                      f"`predict_proba` best {t['predict_proba']['best_per_second']:,}/s", ""]
        batches = [key for key in t if key.startswith("batch_")]
        if batches and not t.get("int8_kept_by_export_check"):
            lines += ["The export check refused this model's int8 file; the bench quantized the fp32 file again "
                      "to measure int8 speed.", ""]
        if batches:
            lines += ["| runtime | " + " | ".join(f"{key.replace('_', ' ')}: sentences/s (x bare fp32 forward)"
                                                  for key in batches) + " |",
                      "|---|" + "---|" * len(batches)]
            for name in ("bare_fp32_forward", "torch", "onnx_fp32", "onnx_int8"):
                cells = []
                for key in batches:
                    r = t[key].get(name)
                    cells.append("-" if r is None else f"{r['best_per_second']:,} "
                                 f"(x{r.get('ratio_to_bare_forward', 1.0):.2f})")
                lines.append(f"| {name} | " + " | ".join(cells) + " |")
            lines.append("")
        lines += ["| cold start of `speechacts predict` | median s | min s | peak RSS MiB | runs |",
                  "|---|---|---|---|---|"]
        for key, c in record["cold_starts"].items():
            lines.append(f"| {key} | {c['median_s']:.2f} | {c['min_s']:.2f} | {c['peak_rss_mib']:.0f} | "
                         f"{len(c['seconds'])} |")
        lines.append("")
        for name, check in record["checks"].items():
            lines.append(f"- target {name}: {'met' if check['met'] else 'MISSED'} ({check})")
        if "stages" in t:
            lines += ["", "| baseline stage | seconds | share |", "|---|---|---|"]
            lines += [f"| {name} | {s['seconds']} | {s['share']:.0%} |" for name, s in t["stages"].items()]
        if "profile_top" in t:
            lines += ["", "| cProfile, 10,000 sentences: function | tottime s | share |", "|---|---|---|"]
            lines += [f"| `{p['function']}` | {p['tottime_s']} | {p['share']:.0%} |" for p in t["profile_top"]]
        lines.append("")
    lines += ["## Import times (fresh interpreter, median)", "",
              f"Other processes: {results['other_processes_cores_during_imports']} CPU cores busy.", "",
              "| import | seconds |", "|---|---|"]
    lines += [f"| {name} | {s} |" for name, s in results["import_seconds"].items()]
    return "\n".join(lines) + "\n"


def bench_model(model_dir: str, args: argparse.Namespace) -> dict:
    """Throughput by runtime and cold starts of one saved model, with how busy the machine was meanwhile."""
    from speechacts import load_classifier
    from speechacts.models import onnx

    classifier = load_classifier(model_dir, runtime="torch")
    record = {"model_dir": model_dir, "family": classifier.family}
    print(f"{classifier.family} {model_dir}: throughput ...", flush=True)
    if classifier.family in HF_FAMILIES:
        record["throughput"], busy = measured(hf_throughput, Path(model_dir), args)
    else:
        record["throughput"], busy = measured(baseline_throughput, classifier, args.sentences, args.repeats)
    record["other_processes_cores_during_throughput"] = busy
    print("  cold starts ...", flush=True)
    env = {key: value for key, value in os.environ.items() if not key.startswith("MLFLOW_")}
    has_onnx = (onnx.read_record(Path(model_dir)) or {}).get("onnx_file") is not None
    record["cold_starts"], busiest = {}, 0.0
    with tempfile.TemporaryDirectory() as tmp:
        store = register(classifier, Path(tmp))
        for runtime in ("torch", "onnx") if has_onnx else ("torch",):
            flag = ["--runtime", runtime] if classifier.family in HF_FAMILIES else []
            for where, source in (("dir", ["--model", model_dir]), ("registry", ["--tracking-uri", store])):
                result, busy = measured(cold_start, [*source, *flag], args.cold_runs, env)
                result["command"] = result["command"].replace(store, "sqlite:///<tmp>/mlflow.db")
                record["cold_starts"][f"{runtime} from {where}" if flag else f"from {where}"] = result
                busiest = max(busiest, busy)
    record["other_processes_cores_during_cold_starts"] = busiest
    record["checks"] = checks(classifier.family, record)
    return record


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", action="append", required=True, help="a saved model directory; repeatable")
    parser.add_argument("--sentences", type=int, default=50_000, help="baseline batch")
    parser.add_argument("--hf-sentences", type=int, default=2_000,
                        help="sentences for the transformer families at batch 32")
    parser.add_argument("--single-sentences", type=int, default=200,
                        help="sentences for the transformer families at batch 1")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--cold-runs", type=int, default=5)
    parser.add_argument("--out", type=Path, default=RESULTS / "predict.json")
    args = parser.parse_args()
    results = {**start_record(), "models": []}
    for model_dir in args.model:
        results["models"].append(bench_model(model_dir, args))
    print("import times ...", flush=True)
    results["import_seconds"], results["other_processes_cores_during_imports"] = measured(import_seconds, 3)
    results["load_average_at_end"] = os.getloadavg()
    save(results, args.out, summary)


if __name__ == "__main__":
    main()
