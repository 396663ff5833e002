"""Load a saved classifier of any family and label sentences or whole articles.

    from speechacts import load_classifier
    classifier = load_classifier()                  # models:/speechacts-classifier@champion
    classifier.predict(["Russia denies any such plans."])[0].label     # 'denial'

A source is a model directory written by `speechacts train` (or an MLflow model folder holding
one), `runs:/RUN_ID/model`, `models:/NAME@ALIAS` or `models:/NAME/VERSION`. Where the store is a
local SQLite file whose schema is one the tests pin (SCHEMA_VERSIONS), the registry is read with
sqlite3 (read-only), so labelling does not wait seconds for `import mlflow` and MLflow's store
set-up; any other store, schema or URI, and anything the direct read does not find, goes through
MLflow, and each such fallback is logged. A local model directory never imports mlflow.
"""

from __future__ import annotations

import logging
import os
import re
import sqlite3
from collections.abc import Iterable
from contextlib import closing
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlparse

from speechacts.errors import DataError, ModelError, TrackingError
from speechacts.labels import LABELS

if TYPE_CHECKING:
    import numpy as np

    from speechacts.classifier import Classifier

DEFAULT_SOURCE = "models:/speechacts-classifier@champion"
DEFAULT_STORE = "sqlite:///mlflow.db"  # MLflow's default, and the project's (config.TrackingConfig)
MODEL_DIR_ARTIFACT = "model_dir"  # the name tracking.log_model gives the saved directory
HOW_TO_GET_ONE = ("train and register a model with `speechacts experiment experiments/default.yaml`, point "
                  "--tracking-uri (or MLFLOW_TRACKING_URI) at the store that has it, or pass --model MODEL_DIR")
URI_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:/")
# MLflow's alembic schema heads that the direct registry read was tested against (tests/test_api.py)
SCHEMA_VERSIONS = frozenset({"dc11669786a5"})  # mlflow 3.17
SQLITE_HEADER = b"SQLite format 3\x00"
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Prediction:
    """One labelled sentence: its label, every label's probability, and for an article its place."""

    text: str
    label: str
    scores: dict[str, float]  # label -> probability, in LABELS order
    position: int | None = None  # article sentences: the segment number `prepare` gives it (id source:NNN)
    kind: str | None = None  # article sentences: headline, standfirst or body
    unsure: bool = False  # the label's probability is below the min_confidence asked for

    @property
    def confidence(self) -> float:
        """The probability of the label (calibrated on out-of-fold predictions)."""
        return self.scores[self.label]

    def to_dict(self) -> dict:
        extra = {} if self.position is None else {"position": self.position, "kind": self.kind}
        return {"text": self.text, "label": self.label, "scores": self.scores, **extra, "unsure": self.unsure}


class SpeechActClassifier:
    """A loaded model of any family behind one interface; inference never asks which family it is."""

    labels = LABELS

    def __init__(self, model: Classifier, model_dir: Path, source: str):
        self.model = model
        self.model_dir = model_dir
        self.source = source

    @property
    def family(self) -> str:
        return self.model.family

    @property
    def runtime(self) -> str:
        """onnx (ONNX Runtime), or torch: the family's own code (for the baseline, numpy and scikit-learn)."""
        return self.model.runtime

    def __repr__(self) -> str:
        return f"SpeechActClassifier(family={self.family!r}, runtime={self.runtime!r}, source={self.source!r})"

    @property
    def context(self) -> str:
        """What the model reads beside a sentence: none, previous or headline+previous."""
        return self.model.context

    def predict_proba(self, texts: list[str] | str, contexts: list[str] | None = None,
                      prior: str | None = None) -> np.ndarray:
        """(n, 5) calibrated probabilities, columns in LABELS order; (0, 5) for no texts. `contexts`
        (one per text) feed a model trained with context; `prior` overrides its saved prior method."""
        texts = check_texts(texts)
        if not texts:
            import numpy as np

            return np.zeros((0, len(LABELS)))
        return self.model.predict_proba(texts, contexts, prior)

    def predict(self, texts: list[str] | str, contexts: list[str] | None = None, min_confidence: float = 0.0,
                prior: str | None = None) -> list[Prediction]:
        """Each text's label and the probability of every label; a single string is one sentence.
        A label whose probability is below `min_confidence` is kept but marked `unsure`."""
        check_confidence(min_confidence)
        texts = check_texts(texts)
        if not texts:
            return []
        proba = self.model.predict_proba(texts, contexts, prior)
        return [Prediction(text, LABELS[best], dict(zip(LABELS, row)), unsure=row[best] < min_confidence)
                for text, best, row in zip(texts, proba.argmax(axis=1).tolist(), proba.tolist())]

    def predict_article(self, text: str, source: str = "article", min_confidence: float = 0.0,
                        prior: str | None = None) -> list[Prediction]:
        """Segment like `prepare`, skip the lines that are not body sentences, label the rest in order,
        each read with its context in the article where the model was trained with one."""
        return self.predict_articles([(source, text)], min_confidence, prior)[0]

    def predict_articles(self, articles: Iterable[tuple[str, str]], min_confidence: float = 0.0,
                         prior: str | None = None) -> list[list[Prediction]]:
        """predict_article for each (source, text), with every body sentence labelled in one batch."""
        from speechacts.context import article_contexts, compose
        from speechacts.segment import segment_article

        per_article, contexts = [], []
        for source, text in articles:
            if not isinstance(text, str) or not text.strip():
                named = "the article" if source == "article" else f"article {source!r}"
                raise DataError(f"{named} is empty; give its text, one paragraph per line")
            segments = segment_article(text, source)
            sentences = [segment for segment in segments if segment.is_body]
            around = article_contexts(segments)
            contexts += [compose(self.context, *around[s.id]) for s in sentences]
            per_article.append(sentences)
        texts = [segment.text for sentences in per_article for segment in sentences]
        predictions = iter(self.predict(texts, contexts, min_confidence, prior) if texts else [])
        return [[replace(next(predictions), position=s.index, kind=s.kind) for s in sentences]
                for sentences in per_article]


def check_confidence(value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
        raise DataError(f"min_confidence must be a probability between 0 and 1, got {value!r}")


def check_texts(texts: list[str] | str) -> list[str]:
    """A list of sentences, each with some text; refuses empty ones by their number."""
    texts = [texts] if isinstance(texts, str) else list(texts)
    for i, text in enumerate(texts, 1):
        if text is None or (isinstance(text, float) and text != text):  # null, or pandas' NaN for it
            raise DataError(f"sentence {i} is missing (null); give every sentence some text")
        if not isinstance(text, str):
            raise DataError(f"sentence {i} is {type(text).__name__} {str(text)[:40]}, not a string")
        if not text.strip():
            raise DataError(f"sentence {i} is empty or only whitespace; give every sentence some text")
    return texts


def load_classifier(source: str | Path | None = None, tracking_uri: str | None = None,
                    runtime: str | None = None) -> SpeechActClassifier:
    """Load a model directory, runs:/RUN_ID/model, models:/NAME@ALIAS or models:/NAME/VERSION, on
    `runtime` (torch or onnx; default: the fastest that passed the model's export check)."""
    from speechacts.classifier import load_model

    source = str(source or DEFAULT_SOURCE)
    model_dir = resolve(source, tracking_uri)
    return SpeechActClassifier(load_model(model_dir, runtime), model_dir, source)


def registered_version(source: str, tracking_uri: str | None = None) -> str | None:
    """The version a models:/NAME@ALIAS or models:/NAME/VERSION source names now; None for other sources,
    or where the registry does not know it (load_classifier then says what is missing)."""
    parsed = parse_models_uri(source)
    if parsed is None:
        return None
    name, alias, version = parsed
    if version:
        return version
    import mlflow
    from mlflow.exceptions import MlflowException

    uri = store_uri(tracking_uri)
    db = sqlite_file(uri)
    if db is not None and not db.is_file():
        return None  # MLflow would create an empty store here
    if uri.startswith(("http://", "https://")):
        from speechacts.tracking import probe

        probe(uri)
    client = mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)
    try:
        if alias.lower() == "latest":
            versions = [int(v.version) for v in client.search_model_versions(f"name = '{name}'")]
            return str(max(versions)) if versions else None
        return str(client.get_model_version_by_alias(name, alias).version)
    except MlflowException:
        return None


def resolve(source: str, tracking_uri: str | None = None) -> Path:
    """The local saved-model directory that a source names."""
    if source.startswith(("models:/", "runs:/")):
        return saved_dir(registry_root(source, store_uri(tracking_uri)), source)
    if source.startswith("file:"):
        source = unquote(urlparse(source).path)
    elif URI_SCHEME.match(source):
        raise ModelError(f"{source}: expected a model directory, runs:/RUN_ID/model, models:/NAME@ALIAS or "
                         "models:/NAME/VERSION")
    path = Path(source).expanduser()
    return saved_dir(path, source) if (path / "MLmodel").is_file() else path


def saved_dir(root: Path, source: str) -> Path:
    """The speechacts model directory inside an MLflow model folder (its `model_dir` artifact)."""
    import yaml

    mlmodel = root / "MLmodel"
    if not mlmodel.is_file():
        raise ModelError(f"{source}: {root} holds no MLflow model (no MLmodel file)")
    flavor = (yaml.safe_load(mlmodel.read_text(encoding="utf-8")) or {}).get("flavors", {}).get("python_function", {})
    artifact = (flavor.get("artifacts") or {}).get(MODEL_DIR_ARTIFACT)
    if not artifact:
        raise ModelError(f"{source}: not a speechacts model (its MLmodel has no {MODEL_DIR_ARTIFACT!r} artifact)")
    return root / artifact["path"]


def store_uri(tracking_uri: str | None) -> str:
    """The registry to read: the one given, else $MLFLOW_REGISTRY_URI, $MLFLOW_TRACKING_URI, ./mlflow.db."""
    return (tracking_uri or os.environ.get("MLFLOW_REGISTRY_URI") or os.environ.get("MLFLOW_TRACKING_URI")
            or DEFAULT_STORE)


def registry_root(source: str, uri: str) -> Path:
    """The local folder of the MLflow model a runs:/ or models:/ URI names."""
    db = sqlite_file(uri)
    if db is not None:
        if not db.is_file():
            raise TrackingError(f"tracking store {uri} not found ({db.absolute()} does not exist); {HOW_TO_GET_ONE}")
        check_sqlite_file(db, uri)
        root = sqlite_registry_root(db, source, uri)
        if root is not None:
            return root
    return mlflow_root(source, uri)


def check_sqlite_file(db: Path, uri: str) -> None:
    """Refuse a file that is not an SQLite database before sqlite3 or MLflow open it (a missing one is let be)."""
    if not db.exists():
        return
    try:
        with open(db, "rb") as f:
            head = f.read(len(SQLITE_HEADER))
    except OSError as exc:
        raise TrackingError(f"tracking store {uri}: cannot read {db} ({exc.strerror})") from None
    if head and head != SQLITE_HEADER:
        raise TrackingError(f"tracking store {uri}: {db} is not an SQLite database (it starts with {head[:8]!r}); "
                            "point --tracking-uri (or MLFLOW_TRACKING_URI) at an MLflow store")


def sqlite_file(uri: str) -> Path | None:
    """The database file of a plain sqlite:/// URI, else None."""
    if not uri.startswith("sqlite:///") or "?" in uri or uri.endswith(":memory:"):
        return None
    return Path(unquote(uri.removeprefix("sqlite:///")))


def parse_models_uri(source: str) -> tuple[str, str | None, str | None] | None:
    """models:/NAME@ALIAS -> (NAME, ALIAS, None); models:/NAME/VERSION -> (NAME, None, VERSION); else None."""
    rest = source.removeprefix("models:/")
    if not source.startswith("models:/") or not rest:
        return None
    if "@" in rest:
        name, alias = rest.rsplit("@", 1)
        return (name, alias, None) if name and alias else None
    name, _, version = rest.rpartition("/")
    return (name, None, version) if name and version else None


ALIAS_SQL = """SELECT v.version, v.status, coalesce(nullif(v.storage_location, ''), v.source)
  FROM registered_model_aliases a JOIN model_versions v
    ON v.name = a.name AND v.version = a.version AND v.workspace = a.workspace
 WHERE a.name = ? AND a.alias = ? AND a.workspace = 'default' AND v.current_stage != 'Deleted_Internal'"""
VERSION_SQL = """SELECT version, status, coalesce(nullif(storage_location, ''), source) FROM model_versions
 WHERE name = ? AND version = ? AND workspace = 'default' AND current_stage != 'Deleted_Internal'"""


def sqlite_registry_root(db: Path, source: str, uri: str) -> Path | None:
    """Read models:/NAME@ALIAS or models:/NAME/VERSION straight from a local MLflow database.

    Returns None (MLflow reads it instead, and the reason is logged) for what this does not cover:
    runs:/ URIs, @latest, stage names, workspaces, an artifact location that is not a local folder,
    a schema version the tests do not pin, a name, alias or version it does not find.
    """
    parsed = parse_models_uri(source)
    if parsed is None or os.environ.get("MLFLOW_ENABLE_WORKSPACES", "").lower() in ("1", "true"):
        return None
    name, alias, version = parsed
    if (alias and alias.lower() == "latest") or (version and not version.isdigit()):
        return None
    try:
        with closing(sqlite3.connect(f"{db.resolve().as_uri()}?mode=ro", uri=True)) as con:
            tables = {t for (t,) in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            if "model_versions" not in tables and "alembic_version" not in tables:
                raise TrackingError(f"tracking store {uri} is empty: it has no model registry; {HOW_TO_GET_ONE}")
            schema = schema_version(con) if "alembic_version" in tables else None
            if schema not in SCHEMA_VERSIONS:
                return fallback(source, f"its schema version {schema} is not one the direct read was tested on")
            row = con.execute(*(ALIAS_SQL, (name, alias)) if alias else (VERSION_SQL, (name, int(version))))
            row = row.fetchone()
    except sqlite3.Error as exc:
        return fallback(source, f"sqlite3: {exc}")
    if row is None:
        return fallback(source, "the direct read did not find it")
    found_version, status, location = row
    if status != "READY":
        raise ModelError(f"{source}: version {found_version} of {name!r} is {status}, not READY; wait for it or "
                         "register the model again")
    parsed_location = urlparse(location)
    if parsed_location.scheme == "file":
        return Path(unquote(parsed_location.path))
    if not parsed_location.scheme:
        return Path(location)
    return fallback(source, f"its artifacts are at {parsed_location.scheme}:, not in a local folder")


def schema_version(con: sqlite3.Connection) -> str | None:
    row = con.execute("SELECT version_num FROM alembic_version").fetchone()
    return row[0] if row else None


def fallback(source: str, reason: str) -> None:
    """Log why MLflow, not the direct read, resolves a source; returns None for the caller to pass on."""
    log.info("asking MLflow for %s: %s", source, reason)
    return None


def not_found(name: str, alias: str | None, version: str | None, uri: str, names: list[str],
              aliases: dict[str, int | str], versions: list[int]) -> str:
    """What is missing from the registry, and what it has instead."""
    if name not in names:
        has = f"it has {', '.join(repr(n) for n in names)}" if names else "it has no registered models"
        return f"no registered model {name!r} in tracking store {uri} ({has}); {HOW_TO_GET_ONE}"
    listed = ", ".join(f"@{a} (version {v})" for a, v in sorted(aliases.items())) or "none"
    known = f"its aliases: {listed}; its versions: {', '.join(map(str, versions)) or 'none'}"
    if alias:
        return (f"registered model {name!r} has no alias {alias!r} in tracking store {uri}; {known}. "
                "`speechacts experiment` sets @champion on the best run")
    return f"registered model {name!r} has no version {version} in tracking store {uri}; {known}"


def mlflow_root(source: str, uri: str) -> Path:
    """Resolve a runs:/ or models:/ URI with MLflow itself (servers, remote artifacts, runs:/)."""
    import mlflow
    from mlflow.exceptions import MlflowException

    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    if uri.startswith(("http://", "https://")):
        from speechacts.tracking import probe

        probe(uri)
    client = mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)
    try:
        target = logged_model_uri(client, source, uri) if source.startswith("runs:/") else version_uri(client, source)
        return Path(mlflow.artifacts.download_artifacts(artifact_uri=target, tracking_uri=uri, registry_uri=uri))
    except MlflowException as exc:
        message = registry_diagnosis(client, source, uri)
        raise ModelError(message or f"{source} in tracking store {uri}: {str(exc).splitlines()[0]}") from None
    except (ModelError, TrackingError):
        raise
    except Exception as exc:  # sqlalchemy, requests, the file system: say which, in one line
        raise TrackingError(f"tracking store {uri} cannot be read ({type(exc).__name__}: "
                            f"{str(exc).splitlines()[0][:200]})") from None


def version_uri(client, source: str) -> str:
    """Where the files of models:/NAME@ALIAS, models:/NAME/VERSION or models:/NAME/latest are, asked of
    this client's registry (download_artifacts alone may resolve models:/ in the process-wide registry)."""
    parsed = parse_models_uri(source)
    if parsed is None:
        return source
    name, alias, version = parsed
    if alias and alias.lower() != "latest":
        found = client.get_model_version_by_alias(name, alias)
    elif version and version.isdigit():
        found = client.get_model_version(name, version)
    elif (alias or version).lower() == "latest":
        versions = client.search_model_versions(f"name = '{name}'")
        if not versions:
            return source  # MLflow's own error, and registry_diagnosis' message
        found = max(versions, key=lambda v: int(v.version))
    else:
        return source  # a stage name: MLflow resolves it
    return client.get_model_version_download_uri(name, found.version)


def registry_diagnosis(client, source: str, uri: str) -> str | None:
    """not_found's message where a models:/ URI names a model, alias or version that MLflow lacks."""
    from mlflow.exceptions import MlflowException

    parsed = parse_models_uri(source)
    if parsed is None:
        return None
    name, alias, version = parsed
    try:
        names = [m.name for m in client.search_registered_models()]
        if name not in names:
            return not_found(name, alias, version, uri, names, {}, [])
        aliases = dict(client.get_registered_model(name).aliases)
        versions = sorted(int(v.version) for v in client.search_model_versions(f"name = '{name}'"))
    except MlflowException:
        return None
    missing = alias not in aliases if alias else version.isdigit() and int(version) not in versions
    return not_found(name, alias, version, uri, names, aliases, versions) if missing else None


def logged_model_uri(client, source: str, uri: str) -> str:
    """runs:/RUN_ID/NAME -> models:/MODEL_ID of the model that run logged under NAME."""
    run_id, _, name = source.removeprefix("runs:/").partition("/")
    name = name.strip("/")
    if not run_id or not name:
        raise ModelError(f"{source}: expected runs:/RUN_ID/MODEL_NAME, e.g. runs:/<run id>/model")
    experiment_id = client.get_run(run_id).info.experiment_id
    logged = [m for m in client.search_logged_models([experiment_id], filter_string=f"name = '{name}'")
              if m.source_run_id == run_id]
    if not logged:
        raise ModelError(f"run {run_id} in tracking store {uri} logged no model named {name!r}")
    return f"models:/{logged[0].model_id}"
