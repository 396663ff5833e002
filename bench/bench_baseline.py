"""The baseline's numpy featuriser against the scikit-learn pipeline it replaced, in one run.

Usage: python bench/bench_baseline.py [--model DIR] [--f1-store URI --runs OLD_RUN NEW_RUN [RUN ...]]

- throughput: the authored sentences repeated to --sentences (as bench_predict.py builds its batch),
  labelled in one batch by (a) the scikit-learn pipeline the baseline used to be (HashingVectorizer
  word 1-2 and char_wb 2-5 -> TF-IDF -> LogisticRegression; rebuilt here, fitted on the same
  sentences with the same settings), (b) the numpy baseline and (c) the numpy baseline with
  character n-grams of --candidate-char-range only (fewer features); best and median of
  --repeats, sentences per CPU-second, and the ratio (b) / (a);
- cold start of `speechacts predict` (median of --cold-runs) with --model DIR (default: the numpy
  baseline fitted here, saved to a temporary directory) and from the registry of a temporary
  SQLite store the model is registered in;
- with --f1-store: the out-of-fold article macro-F1 and folds digest of runs (by run name) of
  `speechacts train configs/baseline.yaml ...` in that store: the old featuriser, the new, candidates.
Results: bench/results/baseline.json and bench/results/baseline.md.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_predict import RESULTS, ROOT, authored, cold_start, measured, register, save, start_record  # noqa: E402

TARGETS = {"sentences_per_second": 50_000, "cold_start_s": 1.5}


def sklearn_pipeline(cfg, seed: int):
    """The baseline before issue 13, as models/baseline.py built it (no context)."""
    from sklearn.feature_extraction.text import HashingVectorizer, TfidfTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import FeatureUnion, Pipeline

    def tfidf(analyzer, ngram_range):
        counts = HashingVectorizer(analyzer=analyzer, ngram_range=tuple(ngram_range), n_features=2**cfg.hash_bits,
                                   alternate_sign=False, norm=None, lowercase=True, strip_accents="unicode")
        return Pipeline([("counts", counts), ("tfidf", TfidfTransformer(sublinear_tf=cfg.sublinear_tf))])

    features = FeatureUnion([("word", tfidf("word", cfg.word_ngram_range)),
                             ("char", tfidf("char_wb", cfg.char_ngram_range))])
    clf = LogisticRegression(C=cfg.C, class_weight=cfg.class_weight, solver=cfg.solver, max_iter=cfg.max_iter,
                             random_state=seed)
    return Pipeline([("features", features), ("classifier", clf)])


def best_and_median(fn, n: int, repeats: int) -> dict:
    """Wall-clock rates, and sentences per CPU-second of this process (all its threads): on a shared machine
    the wall clock counts other processes' time, the CPU time does not."""
    seconds, cpu = [], []
    for _ in range(repeats):
        started, cpu_started = time.perf_counter(), time.process_time()
        fn()
        seconds.append(time.perf_counter() - started)
        cpu.append(time.process_time() - cpu_started)
    return {"sentences": n, "seconds": [round(s, 3) for s in seconds], "best_per_second": round(n / min(seconds)),
            "median_per_second": round(n / statistics.median(seconds)), "cpu_seconds": [round(s, 3) for s in cpu],
            "per_cpu_second": round(n / statistics.median(cpu))}


def throughput(sentences: int, repeats: int, candidate_char_range: list[int]) -> tuple[dict, object]:
    import csv

    import numpy as np

    from speechacts.classifier import build
    from speechacts.config import load_config

    cfg = load_config(ROOT / "configs" / "baseline.yaml")
    with open(ROOT / "data" / "authored.csv", encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    texts, labels = [r["text"] for r in rows], [r["label"] for r in rows]
    old = sklearn_pipeline(cfg.model, cfg.seed).fit(texts, labels)
    new = build(cfg.model, cfg.seed).fit(texts, labels)
    fewer = build(cfg.model.model_copy(update={"char_ngram_range": tuple(candidate_char_range)}), cfg.seed).fit(
        texts, labels)
    batch = authored(sentences)
    with open(ROOT / "data" / "contrast.csv", encoding="utf-8", newline="") as f:
        unseen = [r["text"] for r in csv.DictReader(f)]
    agree = float(np.mean(old.predict(unseen) == np.array(new.predict(unseen))))
    result = {"fitted_on": f"data/authored.csv ({len(texts)} sentences), configs/baseline.yaml model settings",
              "sklearn_pipeline": best_and_median(lambda: old.predict_proba(batch), sentences, repeats),
              "numpy_baseline": best_and_median(lambda: new.predict_proba(batch), sentences, repeats),
              "numpy_candidate": best_and_median(lambda: fewer.predict_proba(batch), sentences, repeats),
              "candidate": f"model.char_ngram_range={list(candidate_char_range)}",
              "label_agreement_on_contrast_sentences": round(agree, 4), "contrast_sentences": len(unseen)}
    result["speedup_best"] = round(result["numpy_baseline"]["best_per_second"]
                                   / result["sklearn_pipeline"]["best_per_second"], 1)
    return result, new


def f1_runs(store: str, names: list[str]) -> list[dict]:
    import mlflow

    client = mlflow.MlflowClient(store)
    out = []
    for name in names:
        runs = client.search_runs([e.experiment_id for e in client.search_experiments()],
                                  filter_string=f"attributes.run_name = '{name}'", order_by=["start_time DESC"])
        if not runs:
            raise SystemExit(f"no run named {name!r} in {store}")
        run = runs[0]
        out.append({"run": name, "run_id": run.info.run_id, "folds_digest": run.data.tags.get("folds_digest"),
                    "folds": run.data.params.get("evaluation.folds"),
                    "cv_article_macro_f1": round(run.data.metrics["cv_article_macro_f1"], 4),
                    "ci": [round(run.data.metrics["cv_article_macro_f1_ci_low"], 3),
                           round(run.data.metrics["cv_article_macro_f1_ci_high"], 3)]})
    return out


def markdown(results: dict) -> str:
    t, m = results["throughput"], results["machine"]
    lines = ["# Baseline benchmark: numpy featuriser vs the scikit-learn pipeline", "",
             f"Generated by `{results['command']}` on {results['date']}.", "",
             f"Machine: {m['nproc']} CPUs ({m['cpu']}), {m['memory_gib']} GiB RAM, Python {m['python']}, commit "
             f"{m['git_commit']}; load average (1, 5, 15 min) {tuple(round(x, 2) for x in m['load_average_1_5_15'])} "
             f"at the start. Other processes kept {results['other_processes_cores_during_throughput']} CPU cores busy "
             f"during the throughput runs, {results['other_processes_cores_during_cold_starts']} during the cold "
             "starts (0 is a quiet machine).", "",
             f"Both fitted on {t['fitted_on']}; batch of {t['numpy_baseline']['sentences']} sentences (the authored "
             "sentences repeated, as bench_predict.py).", "",
             "| pipeline | best sentences/s | median sentences/s | sentences per CPU-second (median) |",
             "|---|---|---|---|"]
    for key, label in (("sklearn_pipeline", "scikit-learn HashingVectorizer pipeline"),
                       ("numpy_baseline", "numpy baseline"),
                       ("numpy_candidate", f"numpy baseline, {t['candidate']}")):
        lines.append(f"| {label} | {t[key]['best_per_second']:,} | {t[key]['median_per_second']:,} | "
                     f"{t[key]['per_cpu_second']:,} |")
    lines += ["", f"Speed-up (best): {t['speedup_best']}x. Label agreement of the two on the "
              f"{t['contrast_sentences']} sentences of data/contrast.csv (not fitted on): "
              f"{t['label_agreement_on_contrast_sentences']:.1%} (the hash functions differ, so do collisions).", ""]
    for key, label in (("cold_start_dir", "model directory"), ("cold_start_registry", "registry (SQLite)")):
        c = results[key]
        lines.append(f"- cold start, {label}: median {c['median_s']} s (min {c['min_s']} s, {len(c['seconds'])} "
                     f"runs): `{c['command']}`")
    for name, check in results["checks"].items():
        lines.append(f"- target {name}: {'met' if check['met'] else 'MISSED'} ({check})")
    if results.get("f1"):
        lines += ["", "Out-of-fold article macro-F1 (`speechacts train`, same seed and folds):", "",
                  "| run | article macro-F1 [95% CI] | folds | folds digest |", "|---|---|---|---|"]
        lines += [f"| {r['run']} | {r['cv_article_macro_f1']:.3f} [{r['ci'][0]}, {r['ci'][1]}] | {r['folds']} | "
                  f"{r['folds_digest']} |" for r in results["f1"]]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="a saved numpy baseline directory for the cold starts (default: fit one)")
    parser.add_argument("--sentences", type=int, default=50_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--cold-runs", type=int, default=5)
    parser.add_argument("--f1-store", help="tracking store holding the two train runs to compare")
    parser.add_argument("--runs", nargs="+", default=["baseline-sklearn", "baseline-numpy", "baseline-numpy-char35"],
                        help="names of train runs in --f1-store: the old featuriser first")
    parser.add_argument("--candidate-char-range", nargs=2, type=int, default=[3, 5], metavar=("LOW", "HIGH"))
    parser.add_argument("--out", type=Path, default=RESULTS / "baseline.json")
    args = parser.parse_args()
    results = start_record()
    (results["throughput"], model), results["other_processes_cores_during_throughput"] = measured(
        throughput, args.sentences, args.repeats, args.candidate_char_range)
    env = {key: value for key, value in os.environ.items() if not key.startswith("MLFLOW_")}
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = args.model or str(model.save(Path(tmp) / "model"))
        results["cold_start_dir"], busy_dir = measured(cold_start, ["--model", model_dir], args.cold_runs, env)
        if not args.model:
            command = results["cold_start_dir"]["command"]
            results["cold_start_dir"]["command"] = command.replace(model_dir, "<tmp>/model")
        from speechacts import load_classifier

        store = register(load_classifier(model_dir), Path(tmp))
        results["cold_start_registry"], busy_registry = measured(
            cold_start, ["--tracking-uri", store], args.cold_runs, env)
        results["cold_start_registry"]["command"] = results["cold_start_registry"]["command"].replace(
            store, "sqlite:///<tmp>/mlflow.db")
    results["other_processes_cores_during_cold_starts"] = max(busy_dir, busy_registry)
    best = results["throughput"]["numpy_baseline"]["best_per_second"]
    results["checks"] = {"sentences_per_second": {"target": TARGETS["sentences_per_second"], "measured": best,
                                                  "met": best >= TARGETS["sentences_per_second"]}}
    for key in ("cold_start_dir", "cold_start_registry"):
        median = results[key]["median_s"]
        results["checks"][key] = {"target_s": TARGETS["cold_start_s"], "measured_median_s": median,
                                  "met": median <= TARGETS["cold_start_s"]}
    if args.f1_store:
        results["f1"] = f1_runs(args.f1_store, args.runs)
    save(results, args.out, markdown)


if __name__ == "__main__":
    main()
