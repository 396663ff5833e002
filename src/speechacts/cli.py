"""`speechacts` command line: one subcommand per job; each calls a plain run() function."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from contextlib import contextmanager
from pathlib import Path

from speechacts.errors import SpeechactsError, Terminated

DEFAULT_RECIPE = Path("configs/baseline.yaml")
DEFAULT_EXPERIMENT = Path("experiments/default.yaml")


def data_config(args: argparse.Namespace):
    """The data section of --config (default configs/baseline.yaml) with overrides."""
    from speechacts.config import DataConfig, load_config

    if args.config is None and not DEFAULT_RECIPE.is_file():
        return DataConfig()
    return load_config(args.config or DEFAULT_RECIPE, args.overrides).data


def cmd_prepare(args: argparse.Namespace) -> int:
    from speechacts import prepare

    cfg = data_config(args)
    if args.add_missing:
        added = prepare.add_missing_rows(cfg)
        print(f"added {added} row(s) with blank labels to {cfg.test[0]} and {cfg.excluded}; label them, "
              "then run `speechacts prepare` again")
        return 0
    _, card = prepare.run(cfg)
    print(card)
    print(f"wrote {prepare.PREPARED_DIR}/sentences.jsonl and {prepare.PREPARED_DIR}/DATA_CARD.md")
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    from speechacts.data import validate

    corpus = validate(data_config(args))
    print(f"ok: {len(corpus.train)} training rows, {len(corpus.test)} test rows, "
          f"{len(corpus.excluded)} left-out lines")
    return 0


def cmd_agreement(args: argparse.Namespace) -> int:
    from speechacts import agreement
    from speechacts.data import validate

    cfg = data_config(args)
    corpus = validate(cfg)
    folder = Path(cfg.second_reading_dir or agreement.SECOND_READING_DIR)
    writers = {name: a.meta.get("writer", "?") for name, a in corpus.articles.items()}
    print(agreement.summary(agreement.read_readings(folder), writers))
    return 0


def cmd_config(args: argparse.Namespace) -> int:
    from speechacts.config import load_config

    print(load_config(args.recipe, args.overrides).to_yaml(), end="")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from speechacts import train
    from speechacts.config import load_config

    train.run(load_config(args.recipe, args.overrides))
    return 0


def cmd_experiment(args: argparse.Namespace) -> int:
    from speechacts import experiment

    experiment.run(args.experiment, args.overrides)
    return 0


def cmd_sweep(args: argparse.Namespace) -> int:
    from speechacts import sweep

    sweep.run(args.sweep, args.overrides, workers=args.workers, storage=args.storage, trials=args.trials)
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from speechacts import compare

    compare.run(args.experiment, tracking_uri=args.tracking_uri)
    return 0


def cmd_segment(args: argparse.Namespace) -> int:
    import csv

    from speechacts.segment import read_article, segment_article

    segments = segment_article(read_article(args.article), args.article.stem)
    if args.csv:  # a label sheet: every body sentence, label left blank
        writer = csv.writer(sys.stdout, lineterminator="\n")
        writer.writerow(["id", "source", "label", "text", "note"])
        writer.writerows([seg.id, seg.source, "", seg.text, ""] for seg in segments if seg.is_body)
        return 0
    for seg in segments:
        print(f"{seg.id}\t{seg.kind if seg.is_body else 'left out: ' + str(seg.reason)}\t{seg.text}")
    return 0


def cmd_sources(args: argparse.Namespace) -> int:
    from speechacts import copycheck
    from speechacts.segment import read_article, split_metadata

    if args.action == "fingerprint":
        written = [p for folder in args.paths for p in copycheck.fingerprint_excerpts(Path(folder))]
        print(f"wrote {len(written)} source fingerprint(s) to {copycheck.SOURCES_DIR}/")
        return 0
    paths = [Path(p) for p in args.paths] or sorted(Path("data/articles").glob("*.txt"))
    fingerprints = copycheck.load_fingerprints()
    problems = []
    for path in paths:
        meta, text = split_metadata(read_article(path))
        problems += copycheck.article_problems(path.stem, text, meta.get("sources", "").split(), fingerprints)
    for problem in problems:
        print(problem)
    print(f"{len(paths)} article(s) checked against {len(fingerprints)} source(s): "
          f"{len(problems)} problem(s)")
    return 1 if problems else 0


def cmd_annotate(args: argparse.Namespace) -> int:
    from speechacts import annotate, copycheck
    from speechacts.config import DataConfig

    provenance = {key: getattr(args, key) for key in annotate.PROVENANCE}
    provenance["sources"] = " ".join(args.sources or [])
    result = annotate.run(args.article, args.out, args.model, args.tracking_uri, args.accept_above,
                          args.articles_dir, provenance)
    to_label = len(result.rows) - result.prefilled
    print(f"wrote {result.sheet}: {len(result.rows)} sentences, most doubtful first; "
          f"{result.prefilled} pre-filled (confidence above {args.accept_above}), {to_label} to label"
          if args.accept_above is not None else
          f"wrote {result.sheet}: {len(result.rows)} sentences, most doubtful first, every label to fill in")
    if result.article is None:
        return 0
    print(f"copied the article to {result.article} under its provenance line")
    known = copycheck.load_fingerprints(DataConfig().sources_dir)
    unprinted = [url for url in provenance["sources"].split() if url not in known]
    if unprinted:
        print(f"note: {len(unprinted)} source(s) have no fingerprint yet; validation needs one for each: "
              "`speechacts sources fingerprint FOLDER` on the excerpts you read")
    print(f"next: fill in each label (set prefilled to 'confirmed' on the pre-filled ones you checked), "
          f"then `speechacts validate`, then `make run` trains on {result.article.stem}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from speechacts import report

    out = report.run(args.article, args.out, args.model, args.tracking_uri, args.min_confidence)
    print(f"wrote {out}")
    return 0


def cmd_curve(args: argparse.Namespace) -> int:
    from speechacts import curve
    from speechacts.config import load_config

    curve.run(load_config(args.recipe, args.overrides), args.points)
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    from speechacts import predict

    return predict.main(args)


def cmd_label(args: argparse.Namespace) -> int:
    from speechacts import label

    return label.main(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="speechacts", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    for name, func, help_ in (("prepare", cmd_prepare, "validate the labels, segment the seeds, print the data card"),
                              ("validate", cmd_validate, "validate the label files against the seed articles"),
                              ("agreement", cmd_agreement, "agreement of the blind second reading of the articles")):
        p = sub.add_parser(name, help=help_)
        p.add_argument("--config", type=Path, default=None,
                       help=f"recipe whose data section to use (default {DEFAULT_RECIPE})")
        p.add_argument("overrides", nargs="*", help="dotted overrides, e.g. data.train=[data/authored.csv]")
        p.set_defaults(func=func)
    sub.choices["prepare"].add_argument("--add-missing", action="store_true",
                                        help="append unlabelled seed sentences and left-out lines to the data files")

    for name, func, help_ in (("config", cmd_config, "print a recipe's resolved config"),
                              ("train", cmd_train, "train and evaluate one recipe, tracked in MLflow")):
        p = sub.add_parser(name, help=help_)
        p.add_argument("recipe", type=Path, help="a YAML recipe in configs/")
        p.add_argument("overrides", nargs="*", help="dotted overrides, e.g. model.C=3 evaluation.folds=10")
        p.set_defaults(func=func)

    p = sub.add_parser("experiment", help="run every recipe of an experiment file, then compare them")
    p.add_argument("experiment", type=Path, nargs="?", default=DEFAULT_EXPERIMENT)
    p.add_argument("overrides", nargs="*", help="dotted overrides applied to every recipe")
    p.set_defaults(func=cmd_experiment)

    p = sub.add_parser("sweep", help="search a recipe's settings with Optuna, trials tracked in MLflow")
    p.add_argument("sweep", type=Path, help="a sweep file: a recipe and a space: of dotted keys with ranges")
    p.add_argument("overrides", nargs="*", help="dotted overrides applied to every trial")
    p.add_argument("--workers", type=int, default=1, metavar="K", help="processes taking trials at once (default 1)")
    p.add_argument("--storage", default=None, metavar="URL",
                   help="the Optuna study store, a SQLAlchemy URL shared by every worker and machine "
                        "(default sqlite:///optuna.db beside the MLflow store)")
    p.add_argument("--trials", type=int, default=None, metavar="N",
                   help="trials to add to the study (default: the file's trials:)")
    p.set_defaults(func=cmd_sweep)

    p = sub.add_parser("compare", help="print an experiment's runs side by side, with paired tests")
    p.add_argument("experiment", nargs="?", default=None, help="MLflow experiment name (default: the config's)")
    p.add_argument("--tracking-uri", default=None)
    p.set_defaults(func=cmd_compare)

    p = sub.add_parser("segment", help="split an article into sentences with their ids, as prepare does")
    p.add_argument("article", type=Path, help="a UTF-8 article, one paragraph per line")
    p.add_argument("--csv", action="store_true", help="print a label sheet of the body sentences (label blank)")
    p.set_defaults(func=cmd_segment)

    p = sub.add_parser("sources", help="fingerprint the sources read, or check articles against them")
    p.add_argument("action", choices=("fingerprint", "check"))
    p.add_argument("paths", nargs="*", help="fingerprint: folders of excerpt files; check: articles (default all)")
    p.set_defaults(func=cmd_sources)

    model_help = ("a model directory, runs:/RUN_ID/model, models:/NAME@ALIAS or models:/NAME/VERSION "
                  "(default models:/speechacts-classifier@champion)")
    store_help = "the MLflow store for runs:/ and models:/ (default $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db)"
    p = sub.add_parser("annotate", help="a label sheet for a new article, pre-labelled, most doubtful sentences first")
    p.add_argument("article", type=Path, help="a UTF-8 article, one paragraph per line")
    p.add_argument("--out", "-o", type=Path, default=None,
                   help="write only the sheet, here; without it the article is copied into --articles-dir "
                        "with its provenance line and the sheet is written beside it")
    p.add_argument("--model", "-m", default=None, metavar="SOURCE", help=model_help)
    p.add_argument("--tracking-uri", default=None, metavar="URI", help=store_help)
    p.add_argument("--accept-above", type=float, default=None, metavar="P",
                   help="pre-fill the label where the model's probability exceeds P (marked prefilled=yes)")
    p.add_argument("--articles-dir", type=Path, default=None, metavar="DIR", help="default data/articles")
    p.add_argument("--dispute", help="provenance: the dispute the article reports")
    p.add_argument("--outlet", help="provenance: wire, broadsheet, regional or analysis")
    p.add_argument("--date", help="provenance: YYYY-MM-DD")
    p.add_argument("--writer", help="provenance: who wrote the article")
    p.add_argument("--sources", nargs="+", metavar="URL", help="provenance: the reports it draws on")
    p.set_defaults(func=cmd_annotate)

    p = sub.add_parser("report", help="an HTML page of an article with each sentence coloured by its act")
    p.add_argument("article", type=Path, help="a UTF-8 article, one paragraph per line")
    p.add_argument("--out", "-o", type=Path, required=True, help="the HTML file to write")
    p.add_argument("--model", "-m", default=None, metavar="SOURCE", help=model_help)
    p.add_argument("--tracking-uri", default=None, metavar="URI", help=store_help)
    p.add_argument("--min-confidence", type=float, default=0.5, metavar="P",
                   help="mark sentences whose top probability is below P as unsure (default 0.5)")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("curve", help="learning curve: the recipe on growing fractions of the training data")
    p.add_argument("recipe", type=Path, help="a YAML recipe in configs/")
    p.add_argument("overrides", nargs="*", help="dotted overrides, e.g. evaluation.folds=10")
    p.add_argument("--points", type=int, default=5, help="fractions 1/2^(points-1) ... 1/2, 1 (default 5)")
    p.set_defaults(func=cmd_curve)

    p = sub.add_parser("predict", help="label sentences or an article with a saved classifier")
    p.add_argument("sentences", nargs="*", help="sentences to label; without them, --file or standard input")
    p.add_argument("--file", "-f", default=None, metavar="PATH",
                   help="an article (UTF-8, one paragraph per line, as in seeds/); '-' for standard input")
    p.add_argument("--lines", action="store_true",
                   help="read --file or standard input as one sentence per line instead of as an article")
    p.add_argument("--model", "-m", default=None, metavar="SOURCE", help=model_help)
    p.add_argument("--tracking-uri", default=None, metavar="URI", help=store_help)
    p.add_argument("--min-confidence", type=float, default=0.0, metavar="P",
                   help="mark labels whose (calibrated) probability is below P as unsure ('?' in the table, "
                        "\"unsure\": true in jsonl); the label itself is kept")
    p.add_argument("--prior", choices=("none", "articles", "em"), default=None,
                   help="override the model's saved label-prior adjustment")
    p.add_argument("--runtime", choices=("torch", "onnx"), default=None,
                   help="what runs a transformer or embeddings model: onnx (ONNX Runtime, no torch import) or "
                        "torch (default: the fastest that passed the model's export check)")
    p.add_argument("--format", choices=("table", "jsonl"), default=None,
                   help="table (default on a terminal) or jsonl: one JSON object per sentence (default in a pipe)")
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("label", help="label every body sentence of a corpus of articles on Spark, into Parquet")
    p.add_argument("--input", "-i", required=True, metavar="PATH",
                   help="the articles: Parquet (file or folder) or JSON lines, columns id and text, "
                        "optionally date and source")
    p.add_argument("--output", "-o", required=True, metavar="PATH", help="the folder of Parquet files to write")
    p.add_argument("--format", choices=("parquet", "jsonl"), default=None,
                   help="the input's format (default: from the file names)")
    p.add_argument("--overwrite", action="store_true", help="replace --output if it exists")
    p.add_argument("--model", "-m", default=None, metavar="SOURCE", help=model_help)
    p.add_argument("--tracking-uri", default=None, metavar="URI", help=store_help)
    p.add_argument("--master", default="local[2]",
                   help="the Spark master: local[N], spark://HOST:7077, yarn, k8s://... (default local[2])")
    p.add_argument("--conf", action="append", default=[], metavar="KEY=VALUE",
                   help="a Spark setting, e.g. --conf spark.executor.memory=4g (repeatable)")
    p.set_defaults(func=cmd_label)
    return parser


@contextmanager
def stop_on_signals():
    """While a command runs, SIGTERM (kill, CI timeouts, container stop) and SIGHUP unwind like Ctrl-C,
    so open runs end KILLED; the previous handlers come back after."""
    def stop(signum, frame):
        signal.signal(signum, signal.SIG_IGN)  # once: let the unwinding finish
        raise Terminated(signum)

    previous = {signum: signal.signal(signum, stop) for signum in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


class NoteFormatter(logging.Formatter):
    """speechacts' log lines as `note: ...` or `warning: ...` on standard error, like its other messages."""

    def format(self, record: logging.LogRecord) -> str:
        return f"{'note' if record.levelno < logging.WARNING else 'warning'}: {record.getMessage()}"


def show_notes() -> None:
    """Warnings of the speechacts loggers on standard error; notes too with SPEECHACTS_LOG=info."""
    import os

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(NoteFormatter())
    logger = logging.getLogger("speechacts")
    logger.handlers[:] = [handler]
    logger.setLevel(logging.INFO if os.environ.get("SPEECHACTS_LOG", "").lower() == "info" else logging.WARNING)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra and isinstance(getattr(args, "overrides", None), list) and not any(a.startswith("-") for a in extra):
        args.overrides += extra  # overrides after an option: `curve RECIPE --points 3 model.C=3`
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    show_notes()
    try:
        with stop_on_signals():
            return args.func(args)
    except SpeechactsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Terminated as exc:
        print(f"terminated by {exc.name}", file=sys.stderr)
        return 128 + exc.signum


if __name__ == "__main__":
    sys.exit(main())
