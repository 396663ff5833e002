"""One interface for every model family: fit, predict, predict_proba, save, load.

A saved model is a directory holding `speechacts.json` (family, labels, resolved config,
package versions) next to the family's own files. `load_model(path)` reads that file and
hands the directory to the family the registry (models.FAMILIES) names, so inference never
asks which family it holds, and a new family needs no change here.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from speechacts.calibration import PostProcess
from speechacts.errors import ModelError
from speechacts.labels import LABELS, top_labels
from speechacts.models import FAMILIES, family_class

META_FILE = "speechacts.json"
FORMAT_VERSION = 1
PACKAGES = ("speechacts", "scikit-learn", "skops", "torch", "transformers", "datasets", "mlflow", "numpy",
            "onnxruntime", "tokenizers")


def package_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return versions


class Classifier:
    """Base of the model families. Subclasses implement fit, _predict_proba, _save, _load.

    `post_` (a calibration.PostProcess: label prior, temperature) is applied to what the family
    scores; train.py fits it on out-of-fold predictions, and it is saved with the model."""

    family = "base"
    runtime = "torch"  # what runs it: the family's own code; "onnx" for a model loaded on ONNX Runtime
    post_: PostProcess | None = None

    def fit(self, texts: list[str], labels: list[str], contexts: list[str] | None = None, eval_set=None,
            log_metrics=None, groups=None) -> Classifier:
        """Fit on texts (and their contexts, for a model whose `context` is not none); families that
        train in epochs score eval_set (texts, labels[, contexts]) and call log_metrics(dict, step).
        groups: each row's article (None for a sentence alone), for families that hold out whole
        articles to validate on (the transformer's early stopping)."""
        raise NotImplementedError

    @property
    def context(self) -> str:
        """What the model reads beside a sentence (context.CONTEXTS)."""
        cfg = getattr(self, "cfg", None)
        return getattr(cfg, "context", "none") if cfg is not None else "none"

    def predict_proba(self, texts: list[str], contexts: list[str] | None = None,
                      prior: str | None = None) -> np.ndarray:
        """(n, 5) probabilities, columns in LABELS order, after the saved prior adjustment and
        temperature; `prior` overrides the saved prior method (none, articles or em). Contexts are
        used by a model trained with them; missing ones read as empty."""
        texts = list(texts)
        if self.context == "none":
            contexts = None
        elif contexts is None:
            contexts = [""] * len(texts)
        elif len(contexts) != len(texts):
            raise ModelError(f"got {len(texts)} texts but {len(contexts)} contexts; give one context per text")
        raw = self._predict_proba(texts, None if contexts is None else [c or "" for c in contexts])
        return (self.post_ or PostProcess())(raw, prior)

    def _predict_proba(self, texts: list[str], contexts: list[str] | None = None) -> np.ndarray:
        raise NotImplementedError

    def predict(self, texts: list[str], contexts: list[str] | None = None) -> list[str]:
        proba = self.predict_proba(texts, contexts)
        return top_labels(proba)

    def save(self, path: str | Path, config: dict[str, Any] | None = None, check=None) -> Path:
        """Write the model directory under a temporary name and rename it when complete, so a kill
        leaves either no `path` or a whole one (and at worst a `.NAME.partial-PID` folder beside it).
        With `check` (models.onnx.CheckSet), a family that exports ONNX writes the files that agree
        with torch on those sentences (models/onnx.py)."""
        path = Path(path)
        config = dict(config or {})
        if "model" not in config and getattr(self, "cfg", None) is not None:
            config["model"] = self.cfg.model_dump(mode="json")  # what _load needs to rebuild the model
        partial = path.with_name(f".{path.name}.partial-{os.getpid()}")
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True)
        try:
            self._save(partial)
            if check is not None:
                self._export(partial, check)
            (self.post_ or PostProcess()).save(partial)
            meta = {"format_version": FORMAT_VERSION, "family": self.family, "labels": list(LABELS),
                    "config": config, "versions": package_versions()}
            (partial / META_FILE).write_text(json.dumps(meta, indent=2), encoding="utf-8")
        except BaseException:
            shutil.rmtree(partial, ignore_errors=True)
            raise
        if path.exists():
            old = path.with_name(f".{path.name}.old-{os.getpid()}")
            path.rename(old)
            partial.rename(path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            partial.rename(path)
        return path

    def _save(self, path: Path) -> None:
        raise NotImplementedError

    def _export(self, path: Path, check) -> None:
        """Write a faster runtime's files beside the saved model (the Hugging Face families: ONNX)."""

    @classmethod
    def _load(cls, path: Path, meta: dict[str, Any]) -> Classifier:
        raise NotImplementedError


def read_meta(path: Path) -> dict[str, Any]:
    meta_path = path / META_FILE
    if not path.is_dir():
        raise ModelError(f"{path}: model directory not found")
    if not meta_path.is_file():
        raise ModelError(f"{path}: not a speechacts model (no {META_FILE}); pass a directory written by "
                         "`speechacts train` or a runs:/ or models:/ URI")
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ModelError(f"{meta_path}: unreadable model metadata: {exc}") from None
    if not isinstance(meta, dict):
        raise ModelError(f"{meta_path}: expected a JSON object with format_version, family, labels and config, "
                         f"got a {type(meta).__name__}; the file is damaged, retrain the model")
    if meta.get("format_version") != FORMAT_VERSION:
        raise ModelError(f"{path}: saved with model format {meta.get('format_version')!r} by speechacts "
                         f"{meta.get('versions', {}).get('speechacts', '?')}; this speechacts reads format "
                         f"{FORMAT_VERSION}: retrain it or install the version that saved it")
    if tuple(meta.get("labels", ())) != LABELS:
        raise ModelError(f"{path}: saved with labels {meta.get('labels')}, this speechacts uses {list(LABELS)}")
    if meta.get("family") not in FAMILIES:
        got = f"family {meta['family']!r}" if "family" in meta else "no family"
        raise ModelError(f"{meta_path}: {got}; expected one of {', '.join(FAMILIES)}. The file is damaged "
                         "or was not written by `speechacts train`")
    if not isinstance(meta.get("config", {}), dict):
        raise ModelError(f"{meta_path}: config must be an object, got {type(meta['config']).__name__}")
    return meta


def saved_model_config(path: Path, meta: dict[str, Any], schema):
    """The validated model section a saved model was made with (what transformer and embeddings need)."""
    from pydantic import ValidationError

    section = meta.get("config", {}).get("model")
    if not isinstance(section, dict):
        raise ModelError(f"{path / META_FILE}: no model config (config.model), which the {meta['family']} family "
                         "needs to load; the file is damaged or was not written by `speechacts train`")
    try:
        return schema.model_validate(section)
    except ValidationError as exc:
        first = exc.errors()[0]
        key = ".".join(str(p) for p in ("config", "model", *first["loc"]))
        raise ModelError(f"{path / META_FILE}: {key}: {first['msg']}; the file is damaged or was written by "
                         "another speechacts version") from None


def load_model(path: str | Path, runtime: str | None = None) -> Classifier:
    """Load a saved model directory of any family, on `runtime` (torch or onnx; default: the one its
    export chose, see models/onnx.py)."""
    from speechacts.models import onnx

    path = Path(path)
    meta = read_meta(path)
    if onnx.choose(path, meta, runtime) == "onnx":
        model = onnx.load(path, meta)
    else:
        model = family_class(meta["family"])._load(path, meta)
    model.post_ = PostProcess.load(path)
    return model


def build(model_cfg: Any, seed: int) -> Classifier:
    """A fresh, unfitted classifier for a model config section."""
    return family_class(model_cfg.family)(model_cfg, seed)
