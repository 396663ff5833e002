"""Load a saved classifier of any family and label sentences or whole articles.

    from speechacts import load_classifier
    classifier = load_classifier()                  # models:/speechacts-classifier@champion
    classifier.predict(["Russia denies any such plans."])[0].label     # 'denial'

A source is a model directory written by `speechacts train` (or an MLflow model folder holding
one), `runs:/RUN_ID/model`, `models:/NAME@ALIAS` or `models:/NAME/VERSION`. Where the store is a
local SQLite file, the registry is read with sqlite3 (read-only), so labelling does not wait
seconds for `import mlflow` and MLflow's store set-up; any other store, and any URI or schema
that direct read does not know, goes through MLflow. A local model directory never imports mlflow.
"""

from __future__ import annotations

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


@dataclass(frozen=True)
class Prediction:
    """One labelled sentence: its label, every label's probability, and for an article its place."""

    text: str
    label: str
    scores: dict[str, float]  # label -> probability, in LABELS order
    position: int | None = None  # article sentences: the segment number `prepare` gives it (id source:NNN)
    kind: str | None = None  # article sentences: headline, standfirst or body

    def to_dict(self) -> dict:
        extra = {} if self.position is None else {"position": self.position, "kind": self.kind}
        return {"text": self.text, "label": self.label, "scores": self.scores, **extra}


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

    def __repr__(self) -> str:
        return f"SpeechActClassifier(family={self.family!r}, source={self.source!r})"

    def predict_proba(self, texts: list[str] | str) -> np.ndarray:
        """(n, 5) probabilities, columns in LABELS order."""
        return self.model.predict_proba(check_texts(texts))

    def predict(self, texts: list[str] | str) -> list[Prediction]:
        """Each text's label and the probability of every label; a single string is one sentence."""
        texts = check_texts(texts)
        if not texts:
            return []
        proba = self.model.predict_proba(texts)
        return [Prediction(text, LABELS[best], dict(zip(LABELS, row)))
                for text, best, row in zip(texts, proba.argmax(axis=1).tolist(), proba.tolist())]

    def predict_article(self, text: str, source: str = "article") -> list[Prediction]:
        """Segment like `prepare`, skip the lines that are not body sentences, label the rest in order."""
        return self.predict_articles([(source, text)])[0]

    def predict_articles(self, articles: Iterable[tuple[str, str]]) -> list[list[Prediction]]:
        """predict_article for each (source, text), with every body sentence labelled in one batch."""
        from speechacts.segment import segment_article

        per_article = []
        for source, text in articles:
            if not isinstance(text, str) or not text.strip():
                named = "the article" if source == "article" else f"article {source!r}"
                raise DataError(f"{named} is empty; give its text, one paragraph per line")
            per_article.append([segment for segment in segment_article(text, source) if segment.is_body])
        predictions = iter(self.predict([segment.text for sentences in per_article for segment in sentences]))
        return [[replace(next(predictions), position=s.index, kind=s.kind) for s in sentences]
                for sentences in per_article]


def check_texts(texts: list[str] | str) -> list[str]:
    """A list of sentences, each with some text; refuses empty ones by their number."""
    texts = [texts] if isinstance(texts, str) else list(texts)
    for i, text in enumerate(texts, 1):
        if not isinstance(text, str):
            raise DataError(f"sentence {i} is a {type(text).__name__}, not a string")
        if not text.strip():
            raise DataError(f"sentence {i} is empty or only whitespace; give every sentence some text")
    return texts


def load_classifier(source: str | Path | None = None, tracking_uri: str | None = None) -> SpeechActClassifier:
    """Load a model directory, runs:/RUN_ID/model, models:/NAME@ALIAS or models:/NAME/VERSION."""
    from speechacts.classifier import load_model

    source = str(source or DEFAULT_SOURCE)
    model_dir = resolve(source, tracking_uri)
    return SpeechActClassifier(load_model(model_dir), model_dir, source)


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
        root = sqlite_registry_root(db, source, uri)
        if root is not None:
            return root
    return mlflow_root(source, uri)


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

    Returns None (MLflow reads it instead) for what this does not cover: runs:/ URIs, @latest,
    stage names, workspaces, an artifact location that is not a local folder, a schema it does not know.
    """
    parsed = parse_models_uri(source)
    if parsed is None or os.environ.get("MLFLOW_ENABLE_WORKSPACES", "").lower() in ("1", "true"):
        return None
    name, alias, version = parsed
    if (alias and alias.lower() == "latest") or (version and not version.isdigit()):
        return None
    try:
        with closing(sqlite3.connect(f"{db.resolve().as_uri()}?mode=ro", uri=True)) as con:
            if con.execute("SELECT 1 FROM sqlite_master WHERE name = 'model_versions'").fetchone() is None:
                raise TrackingError(f"tracking store {uri} is empty: it has no model registry; {HOW_TO_GET_ONE}")
            row = con.execute(*(ALIAS_SQL, (name, alias)) if alias else (VERSION_SQL, (name, int(version))))
            row = row.fetchone()
            if row is None:
                raise ModelError(not_found(name, alias, version, uri, *sqlite_contents(con, name)))
    except sqlite3.Error:
        return None
    found_version, status, location = row
    if status != "READY":
        raise ModelError(f"{source}: version {found_version} of {name!r} is {status}, not READY; wait for it or "
                         "register the model again")
    parsed_location = urlparse(location)
    if parsed_location.scheme == "file":
        return Path(unquote(parsed_location.path))
    return Path(location) if not parsed_location.scheme else None


def sqlite_contents(con: sqlite3.Connection, name: str) -> tuple[list[str], dict[str, int], list[int]]:
    """The registered model names, and the aliases and versions of one of them."""
    names = [n for (n,) in con.execute("SELECT name FROM registered_models WHERE workspace = 'default'")]
    aliases = dict(con.execute("SELECT alias, version FROM registered_model_aliases WHERE name = ? "
                               "AND workspace = 'default'", (name,)).fetchall())
    versions = [v for (v,) in con.execute("SELECT version FROM model_versions WHERE name = ? AND workspace = "
                                          "'default' AND current_stage != 'Deleted_Internal' ORDER BY version",
                                          (name,))]
    return names, aliases, versions


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
        target = logged_model_uri(client, source, uri) if source.startswith("runs:/") else source
        return Path(mlflow.artifacts.download_artifacts(artifact_uri=target, tracking_uri=uri, registry_uri=uri))
    except MlflowException as exc:
        message = registry_diagnosis(client, source, uri)
        raise ModelError(message or f"{source} in tracking store {uri}: {str(exc).splitlines()[0]}") from None


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
