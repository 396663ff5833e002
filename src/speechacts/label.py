"""The label job: every body sentence of a corpus of articles, labelled on Apache Spark, into Parquet.

    speechacts label --input articles.jsonl --output labelled/ [--model SOURCE] [--master local[2]]

The corpus is Parquet (a file, or a folder of them) or JSON lines, one article a record: `id` and
`text` (one paragraph per line, as in seeds/), optionally `date` and `source`, which are carried
into the output. Spark reads it and spreads the articles over its cores; on each, mapInPandas
hands batches of articles to the project's own classifier (SpeechActClassifier.predict_articles,
what predict_article does for each, in one batch). The model is resolved once on the driver (an
alias pinned to its version) and shipped to the executors with SparkContext.addFile, so executors
need the project installed but no access to the tracking store. The output is a folder of
Parquet files, one row per body sentence: article_id, date and source where given, position,
kind, text, label, score_<label> for every label, model_uri and model_version.
"""

from __future__ import annotations

import argparse
import functools
import os
import re
import shutil
import sys
import tempfile
import time
import uuid
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from speechacts.api import load_classifier
from speechacts.errors import DataError, EngineError
from speechacts.labels import LABELS
from speechacts.sources import DEFAULT_SOURCE, URI_SCHEME, parse_models_uri, registered_version

if TYPE_CHECKING:
    import pandas as pd
    from pyspark.sql import DataFrame, SparkSession

    from speechacts.api import SpeechActClassifier

DEFAULT_MASTER = "local[2]"
ARTICLES_PER_BATCH = 64  # one predict call per batch: ~2,000 sentences, length-sorted by the transformer
JSON_SUFFIXES = (".jsonl", ".json", ".ndjson", ".jsonl.gz", ".json.gz", ".ndjson.gz")
PARQUET_SUFFIXES = (".parquet", ".pq")
CARRIED = ("date", "source")  # optional input columns copied to every sentence of the article
SCORE_COLUMNS = [f"score_{label}" for label in LABELS]
STORAGE_URI = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")  # hdfs://, s3a://, gs://, file://: Spark reads them
INPUT_HELP = ("Parquet (.parquet, or a folder of them) or JSON lines (.jsonl, .json, .ndjson, optionally .gz), "
              "one article a record with columns id and text")


@dataclass(frozen=True)
class LabelResult:
    output: str
    articles: int
    skipped: int  # articles with an empty text: no sentences
    sentences: int
    seconds: float  # the labelling job, from reading the corpus to the last Parquet file written
    model_uri: str
    model_version: str | None


def run(input_path: str | Path, output: str | Path, model: str | None = None, tracking_uri: str | None = None,
        master: str = DEFAULT_MASTER, conf: dict[str, str] | None = None, overwrite: bool = False,
        fmt: str | None = None) -> LabelResult:
    """Label a corpus on Spark; uses the active Spark session if there is one, else starts (and stops) one.

    Paths are local, or URIs Spark reads (hdfs://, s3a://, ...); fmt ('parquet' or 'jsonl') overrides the
    format read from the names."""
    input_path, output = str(input_path), str(output)
    fmt = input_format(input_path, fmt)
    if not STORAGE_URI.match(output) and Path(output).exists() and not overwrite:
        raise DataError(f"{output} already exists; choose another --output or pass --overwrite")
    # the model: an alias pinned to the version it names now, loaded once here so a bad source fails fast
    source = model or DEFAULT_SOURCE
    version = registered_version(source, tracking_uri)
    name = (parse_models_uri(source) or [None])[0]
    classifier = load_classifier(f"models:/{name}/{version}" if version else source, tracking_uri)
    model_uri = source if URI_SCHEME.match(source) else str(Path(source).resolve())

    spark, started = session(master, conf)
    shipped = tempfile.mkdtemp(prefix="speechacts-label-")
    try:
        start = time.perf_counter()
        articles, counts = read_articles(spark, input_path, fmt)
        # ship a copy under a name of its own: SparkContext.addFile refuses one name for two paths
        model_name = f"model-{uuid.uuid4().hex[:12]}"
        shutil.copytree(classifier.model_dir, Path(shipped) / model_name)
        spark.sparkContext.addFile(str(Path(shipped) / model_name), recursive=True)
        carried = [column for column in CARRIED if column in articles.columns]
        labelled = articles.mapInPandas(
            functools.partial(label_partition, model_name=model_name, model_uri=model_uri,
                              model_version=version, carried=carried),
            output_schema(articles, carried))
        write(labelled, output, overwrite)
        seconds = time.perf_counter() - start
        sentences = spark.read.parquet(output).count()
    finally:
        shutil.rmtree(shipped, ignore_errors=True)
        if started:
            spark.stop()
    return LabelResult(output, counts["articles"], counts["blank"], sentences, seconds, model_uri, version)


def write(labelled: DataFrame, output: str, overwrite: bool) -> None:
    """Run the job; a speechacts error raised on an executor comes back as one line, not a Java trace."""
    from pyspark.errors import AnalysisException, PythonException

    try:
        labelled.write.mode("overwrite" if overwrite else "errorifexists").parquet(output)
    except AnalysisException as exc:
        if "PATH_ALREADY_EXISTS" not in str(exc):
            raise
        raise DataError(f"{output} already exists; choose another --output or pass --overwrite") from None
    except PythonException as exc:
        found = re.search(r"speechacts\.errors\.\w+: (.*)", str(exc))
        if found is None:
            raise
        raise EngineError(f"on an executor: {found.group(1)}") from None


def input_format(location: str, fmt: str | None = None) -> str:
    """'parquet' or 'json': fmt if given, else from the name of the file, of the files in a folder, or of a URI."""
    remote, path = bool(STORAGE_URI.match(location)), Path(location)
    if not remote and not path.exists():
        raise DataError(f"{location}: input not found; give {INPUT_HELP}")
    if fmt:
        return "json" if fmt == "jsonl" else fmt
    names = [location.rstrip("/").lower()] if remote or path.is_file() else \
        [p.name.lower() for p in path.rglob("*") if p.is_file() and not p.name.startswith(("_", "."))]
    if any(name.endswith(PARQUET_SUFFIXES) for name in names):
        return "parquet"
    if any(name.endswith(JSON_SUFFIXES) for name in names):
        return "json"
    what = f"unknown format {path.suffix or 'with no suffix'!r}" if remote or path.is_file() else \
        "a folder with no .parquet or .jsonl files"
    raise DataError(f"{location}: {what}; expected {INPUT_HELP}, or pass --format parquet|jsonl")


def session(master: str, conf: dict[str, str] | None = None) -> tuple[SparkSession, bool]:
    """The active Spark session, else a new one on master; and whether it was started here."""
    try:
        from pyspark.sql import SparkSession
    except ImportError:
        raise EngineError("pyspark is not installed; install the spark extra: pip install -e '.[spark]'") from None
    quiet_pyspark_warnings()
    active = SparkSession.getActiveSession()
    if active is not None:
        return active, False
    if not (shutil.which("java") or os.environ.get("JAVA_HOME")):
        raise EngineError("Java not found: Spark needs Java 17 or newer on PATH or in JAVA_HOME")
    # executors run this interpreter (local masters), so they see the same packages
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    builder = (SparkSession.builder.master(master).appName("speechacts-label")
               .config("spark.sql.execution.arrow.maxRecordsPerBatch", str(ARTICLES_PER_BATCH))
               .config("spark.ui.showConsoleProgress", "false")
               .config("spark.log.level", "ERROR"))
    for key, value in (conf or {}).items():
        builder = builder.config(key, value)
    try:
        return builder.getOrCreate(), True
    except Exception as exc:  # the JVM did not start, or the master is unreachable
        raise EngineError(f"could not start Spark on master {master!r}: {str(exc).splitlines()[0][:300]}") from None


def quiet_pyspark_warnings() -> None:
    """pyspark 4.x warns on every use that it does not fully support pandas 3; it works for what this job does."""
    warnings.filterwarnings("ignore", message=".*PySpark does not yet fully support pandas.*", category=FutureWarning)


def read_articles(spark: SparkSession, path: str, fmt: str) -> tuple[DataFrame, dict[str, int]]:
    """The articles with some text, spread over at least every core; refuses a corpus it cannot label."""
    from pyspark.sql import functions as F
    from pyspark.sql.types import IntegralType, StringType

    frame = spark.read.parquet(path) if fmt == "parquet" else spark.read.json(path)
    missing = [column for column in ("id", "text") if column not in frame.columns]
    if missing:
        has = ", ".join(c for c in frame.columns if c != "_corrupt_record") or "none"
        raise DataError(f"{path}: no column {' or '.join(missing)} (it has: {has}); every article needs an id "
                        "and its text")
    types = {field.name: field.dataType for field in frame.schema.fields}
    if not isinstance(types["text"], StringType):
        raise DataError(f"{path}: column text holds {types['text'].simpleString()}, not strings; give each "
                        "article's text, one paragraph per line")
    if not isinstance(types["id"], StringType | IntegralType):
        raise DataError(f"{path}: column id holds {types['id'].simpleString()}; give each article a string or "
                        "integer id")
    blank = F.col("text").isNull() | F.col("text").rlike(r"(?U)^\s*$")  # (?U): Unicode spaces, as str.strip
    checks = [F.count(F.lit(1)).alias("articles"), F.count_if(F.col("id").isNull()).alias("no_id"),
              F.count_distinct("id").alias("ids"), F.count_if(blank).alias("blank")]
    if "_corrupt_record" in frame.columns:
        checks.append(F.count_if(F.col("_corrupt_record").isNotNull()).alias("corrupt"))
    counts = frame.agg(*checks).first().asDict()
    if counts.get("corrupt"):
        raise DataError(f"{path}: {counts['corrupt']} line(s) are not JSON objects; give one article a line, "
                        'e.g. {"id": "a1", "text": "..."}')
    if counts["articles"] == 0:
        raise DataError(f"{path}: no articles; give {INPUT_HELP}")
    if counts["no_id"]:
        raise DataError(f"{path}: {counts['no_id']} article(s) have no id; every article needs a unique id")
    if counts["ids"] < counts["articles"]:
        repeated = frame.groupBy("id").count().where("count > 1").first()
        raise DataError(f"{path}: {counts['articles'] - counts['ids']} article(s) repeat an id, e.g. "
                        f"{repeated['id']!r} ({repeated['count']} times); ids must be unique, they name the "
                        "sentences in the output")
    frame = frame.where(~blank).withColumn("id", F.col("id").cast("string"))
    frame = frame.select("id", "text", *[c for c in CARRIED if c in frame.columns])
    cores = spark.sparkContext.defaultParallelism
    if frame.rdd.getNumPartitions() < cores:
        frame = frame.repartition(cores)
    return frame, counts


def output_schema(articles: DataFrame, carried: list[str]):
    """article_id, the carried columns with their input types, position ... score_<label> ..., the model."""
    from pyspark.sql.types import DoubleType, IntegerType, StringType, StructField, StructType

    types = {field.name: field.dataType for field in articles.schema.fields}
    return StructType([StructField("article_id", StringType(), False),
                       *[StructField(column, types[column]) for column in carried],
                       StructField("position", IntegerType(), False), StructField("kind", StringType(), False),
                       StructField("text", StringType(), False), StructField("label", StringType(), False),
                       *[StructField(column, DoubleType(), False) for column in SCORE_COLUMNS],
                       StructField("model_uri", StringType(), False), StructField("model_version", StringType())])


def label_frame(classifier: SpeechActClassifier, articles: pd.DataFrame, model_uri: str,
                model_version: str | None, carried: tuple[str, ...] | list[str] = ()) -> pd.DataFrame:
    """One row per body sentence of a batch of articles (columns id, text, and the carried ones)."""
    import pandas as pd

    articles = articles[[isinstance(text, str) and bool(text.strip()) for text in articles["text"]]]
    predicted = classifier.predict_articles(zip(articles["id"], articles["text"]))
    rows = [(i, p) for i, predictions in enumerate(predicted) for p in predictions]
    index = [i for i, _ in rows]
    out = pd.DataFrame({"article_id": articles["id"].to_numpy()[index]})
    for column in carried:
        out[column] = articles[column].to_numpy()[index]
    out["position"] = pd.array([p.position for _, p in rows], dtype="int32")
    out["kind"] = [p.kind for _, p in rows]
    out["text"] = [p.text for _, p in rows]
    out["label"] = [p.label for _, p in rows]
    for label, column in zip(LABELS, SCORE_COLUMNS):
        out[column] = [float(p.scores[label]) for _, p in rows]
    out["model_uri"] = model_uri
    out["model_version"] = model_version
    return out


_loaded: dict[str, SpeechActClassifier] = {}  # per Python worker, which Spark reuses across tasks


def label_partition(batches: Iterator[pd.DataFrame], model_name: str, model_uri: str, model_version: str | None,
                    carried: list[str]) -> Iterator[pd.DataFrame]:
    """The mapInPandas function: runs on the executors, one Spark task's batches of articles at a time."""
    from pyspark import SparkFiles, TaskContext

    quiet_pyspark_warnings()
    if model_name not in _loaded:
        _loaded.clear()  # a worker keeps the model of the job at hand only
        _loaded[model_name] = load_classifier(SparkFiles.get(model_name))
    if "torch" in sys.modules:  # one torch thread per core Spark gives the task, not every core of the machine
        sys.modules["torch"].set_num_threads(max(1, TaskContext.get().cpus()))
    for batch in batches:
        yield label_frame(_loaded[model_name], batch, model_uri, model_version, carried)


def main(args: argparse.Namespace) -> int:
    conf = {}
    for item in args.conf:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise DataError(f"--conf {item!r}: expected KEY=VALUE, e.g. --conf spark.executor.memory=4g")
        conf[key.strip()] = value
    result = run(args.input, args.output, args.model, args.tracking_uri, args.master, conf, args.overwrite,
                 args.format)
    version = f" version {result.model_version}" if result.model_version else ""
    skipped = f" ({result.skipped} with empty text skipped)" if result.skipped else ""
    print(f"labelled {result.sentences} sentences of {result.articles} articles{skipped} with "
          f"{result.model_uri}{version} in {result.seconds:.1f} s ({result.sentences / result.seconds:,.0f} "
          f"sentences/s); wrote {result.output.rstrip('/')}/")
    return 0
