"""TF-IDF of hashed word and character n-grams -> LogisticRegression, predicted in numpy alone.

Features (ngrams.py): word n-grams and character n-grams within words of the sentence, and with
a context, the context's word n-grams as a block of their own; each block is sublinear TF times
IDF, L2-normalised per sentence, as scikit-learn's TfidfTransformer does. scikit-learn fits the
LogisticRegression; prediction is the blocks' sparse dot product with the coefficients and a
softmax, so loading and predicting import numpy and safetensors only.

Saved as plain data, which cannot carry code: `baseline.safetensors` (each block's IDF vector,
the coefficients and the intercepts) and `baseline.json` (the classes and the featuriser's
settings).
"""

from __future__ import annotations

import json
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from speechacts.classifier import Classifier
from speechacts.errors import ModelError
from speechacts.labels import LABELS
from speechacts.models.common import aligned_proba
from speechacts.models.ngrams import HASH_VERSION, Counts, Stream

if TYPE_CHECKING:
    from speechacts.config import BaselineModel  # pydantic: imported where a model is fitted, not loaded

ARRAYS_FILE = "baseline.safetensors"
SETTINGS_FILE = "baseline.json"
OLD_FILE = "pipeline.skops"  # speechacts before the numpy featuriser: a scikit-learn pipeline
CHUNK = 2048  # sentences featurised at a time (and in parallel): small arrays stay in cache


class Featuriser:
    """The n-gram blocks of a sentence batch: (name, Counts) for word, char and, with a context, context."""

    def __init__(self, settings: dict[str, Any]):
        self.settings = settings
        self.bits = settings["hash_bits"]

    @classmethod
    def from_config(cls, cfg: BaselineModel) -> Featuriser:
        return cls({"hash_version": HASH_VERSION, "word_ngram_range": list(cfg.word_ngram_range),
                    "char_ngram_range": list(cfg.char_ngram_range), "hash_bits": cfg.hash_bits,
                    "sublinear_tf": cfg.sublinear_tf, "context": cfg.context})

    @property
    def blocks(self) -> list[str]:
        return ["word", "char"] + ([] if self.settings["context"] == "none" else ["context"])

    def counts(self, texts: list[str], contexts: list[str] | None) -> list[Counts]:
        sentences = Stream(texts)
        out = [sentences.words(*self.settings["word_ngram_range"], self.bits),
               sentences.char_wb(*self.settings["char_ngram_range"], self.bits)]
        if self.settings["context"] != "none":
            out.append(Stream(contexts or [""] * len(texts)).words(*self.settings["word_ngram_range"], self.bits))
        return out

    def weighted(self, counts: Counts, idf: np.ndarray) -> np.ndarray:
        """TF-IDF values of the counts' entries, each row L2-normalised."""
        tf = 1.0 + np.log(counts.counts) if self.settings["sublinear_tf"] else counts.counts
        values = tf * idf[counts.cols]
        norms = np.sqrt(np.bincount(counts.rows, weights=values * values, minlength=counts.n))
        return values / np.maximum(norms, 1e-300)[counts.rows]


def idf_of(counts: Counts, bits: int) -> np.ndarray:
    """Smoothed IDF, as TfidfTransformer: ln((1 + n) / (1 + df)) + 1."""
    df = np.bincount(counts.cols, minlength=2**bits)
    return np.log((1 + counts.n) / (1 + df)) + 1.0


class BaselineClassifier(Classifier):
    family = "baseline"

    def __init__(self, cfg: BaselineModel | None = None, seed: int = 0):
        self.cfg = cfg
        self.seed = seed
        self.featuriser_: Featuriser | None = None
        self.idf_: list[np.ndarray] = []
        self.coef_: np.ndarray | None = None  # (classes or 1, blocks * 2**bits)
        self.intercept_: np.ndarray | None = None
        self.labels_: list[str] = []

    @property
    def context(self) -> str:
        return self.featuriser_.settings["context"] if self.featuriser_ else super().context

    def fit(self, texts: list[str], labels: list[str], contexts: list[str] | None = None, eval_set=None,
            log_metrics=None, groups=None) -> BaselineClassifier:
        import scipy.sparse as sp
        from sklearn.linear_model import LogisticRegression

        from speechacts.config import BaselineModel

        self.cfg = cfg = self.cfg or BaselineModel()
        self.featuriser_ = featuriser = Featuriser.from_config(cfg)
        blocks = featuriser.counts(list(texts), contexts)
        self.idf_ = [idf_of(c, featuriser.bits) for c in blocks]
        size = 2**featuriser.bits
        X = sp.hstack([sp.csr_matrix((featuriser.weighted(c, idf), (c.rows, c.cols)), shape=(c.n, size))
                       for c, idf in zip(blocks, self.idf_)]).tocsr()
        clf = LogisticRegression(C=cfg.C, class_weight=cfg.class_weight, solver=cfg.solver, max_iter=cfg.max_iter,
                                 random_state=self.seed).fit(X, list(labels))
        self.coef_, self.intercept_, self.labels_ = clf.coef_, clf.intercept_, [str(c) for c in clf.classes_]
        return self

    def _predict_proba(self, texts: list[str], contexts: list[str] | None = None) -> np.ndarray:
        if self.coef_ is None:
            raise ModelError("the baseline classifier is not fitted; call fit() or load a saved model")
        chunks = [(texts[i:i + CHUNK], None if contexts is None else contexts[i:i + CHUNK])
                  for i in range(0, len(texts), CHUNK)]
        workers = min(len(chunks), len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1)
        if workers > 1:  # numpy releases the GIL in its loops and sorts: the chunks run in parallel
            with ThreadPoolExecutor(workers) as pool:
                scores = list(pool.map(lambda chunk: self.decision(*chunk), chunks))
        else:
            scores = [self.decision(*chunk) for chunk in chunks]
        return aligned_proba(probabilities(np.concatenate(scores)), self.labels_)

    def decision(self, texts: list[str], contexts: list[str] | None) -> np.ndarray:
        """The linear scores (n, classes or 1): per block, sum(tf * idf * coef) over a sentence's n-grams
        divided by the L2 norm of its tf * idf (the TF-IDF row times the coefficients, in fewer passes)."""
        featuriser = self.featuriser_
        scores = np.tile(self.intercept_, (len(texts), 1))
        for counts, (table, idf_squared) in zip(featuriser.counts(texts, contexts), self.tables_):
            if not counts.rows.size:
                continue
            tf = 1.0 + np.log(counts.counts) if featuriser.settings["sublinear_tf"] else counts.counts
            norms = np.sqrt(np.bincount(counts.rows, weights=tf * tf * idf_squared[counts.cols], minlength=len(texts)))
            first = np.flatnonzero(np.concatenate(([True], counts.rows[1:] != counts.rows[:-1])))
            sums = np.add.reduceat(np.take(table, counts.cols, axis=0) * tf.astype(np.float32)[:, None], first, axis=0)
            present = counts.rows[first]
            scores[present] += sums / norms[present, None]
        return scores

    @property
    def tables_(self) -> list[tuple[np.ndarray, np.ndarray]]:
        """Per block, (idf * coef as a float32 (2**bits, classes) table, idf squared), built once: what the
        n-grams gather."""
        cached = self.__dict__.get("_tables")
        if cached is None:
            size = 2**self.featuriser_.bits
            cached = [(np.ascontiguousarray((self.coef_[:, b * size:(b + 1) * size] * idf).T, dtype=np.float32),
                       idf * idf) for b, idf in enumerate(self.idf_)]
            self.__dict__["_tables"] = cached
        return cached

    def _save(self, path: Path) -> None:
        from safetensors.numpy import save_file

        arrays = {f"idf_{name}": idf for name, idf in zip(self.featuriser_.blocks, self.idf_)}
        save_file({**arrays, "coef": np.ascontiguousarray(self.coef_), "intercept": self.intercept_},
                  str(path / ARRAYS_FILE))
        settings = {**self.featuriser_.settings, "classes": self.labels_}
        (path / SETTINGS_FILE).write_text(json.dumps(settings, indent=2), encoding="utf-8")

    @classmethod
    def _load(cls, path: Path, meta: dict[str, Any]) -> BaselineClassifier:
        model = cls()
        settings = read_settings(path)
        model.featuriser_ = Featuriser({k: v for k, v in settings.items() if k != "classes"})
        model.labels_ = settings["classes"]
        arrays = read_arrays(path / ARRAYS_FILE)
        expected = [f"idf_{name}" for name in model.featuriser_.blocks] + ["coef", "intercept"]
        missing = [name for name in expected if name not in arrays]
        if missing:
            raise ModelError(f"{path / ARRAYS_FILE}: no array {', '.join(missing)}; the file is damaged or was not "
                             "written by `speechacts train`: retrain the model")
        size, blocks = 2**model.featuriser_.bits, len(model.featuriser_.blocks)
        model.idf_ = [arrays[f"idf_{name}"] for name in model.featuriser_.blocks]
        model.coef_, model.intercept_ = arrays["coef"], arrays["intercept"]
        rows = 1 if len(model.labels_) == 2 else len(model.labels_)
        shapes = {"idf": [idf.shape for idf in model.idf_], "coef": model.coef_.shape,
                  "intercept": model.intercept_.shape}
        if (any(s != (size,) for s in shapes["idf"]) or shapes["coef"] != (rows, blocks * size)
                or shapes["intercept"] != (rows,)):
            raise ModelError(f"{path / ARRAYS_FILE}: array shapes {shapes} do not fit {SETTINGS_FILE} "
                             f"({blocks} blocks of 2**{model.featuriser_.bits} features, {len(model.labels_)} "
                             "classes); the files are damaged or from different models: retrain the model")
        return model


def probabilities(scores: np.ndarray) -> np.ndarray:
    """LogisticRegression.predict_proba from decision scores: softmax, or the logistic of one column."""
    if scores.shape[1] == 1:
        positive = 1.0 / (1.0 + np.exp(-scores[:, 0]))
        return np.column_stack([1.0 - positive, positive])
    shifted = np.exp(scores - scores.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


def read_settings(path: Path) -> dict[str, Any]:
    """baseline.json, checked; a directory from before it says to retrain."""
    file = path / SETTINGS_FILE
    if not file.is_file():
        if (path / OLD_FILE).is_file():
            raise ModelError(f"{path}: a baseline saved as a scikit-learn pipeline ({OLD_FILE}) by an older "
                             "speechacts; this one reads plain arrays (baseline.safetensors, baseline.json): "
                             "retrain it with `speechacts train configs/baseline.yaml`")
        raise ModelError(f"{file}: missing; the model directory is incomplete: copy it again or retrain the model")
    try:
        settings = json.loads(file.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ModelError(f"{file}: unreadable ({exc}); copy the model again or retrain it") from None
    keys = ("hash_version", "word_ngram_range", "char_ngram_range", "hash_bits", "sublinear_tf", "context",
            "classes")
    missing = [k for k in keys if not isinstance(settings, dict) or k not in settings]
    if missing:
        raise ModelError(f"{file}: no {', '.join(missing)}; the file is damaged or was not written by "
                         "`speechacts train`: retrain the model")
    if settings["hash_version"] != HASH_VERSION:
        raise ModelError(f"{file}: n-gram hash version {settings['hash_version']!r}, this speechacts hashes with "
                         f"version {HASH_VERSION}: retrain the model")
    unknown = [c for c in settings["classes"] if c not in LABELS]
    if unknown or len(settings["classes"]) < 2:
        raise ModelError(f"{file}: classes {settings['classes']} must be two or more of {list(LABELS)}; "
                         "the file is damaged: retrain the model")
    return settings


def read_arrays(file: Path) -> dict[str, np.ndarray]:
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    if not file.is_file():
        raise ModelError(f"{file}: missing; the model directory is incomplete: copy it again or retrain the model")
    try:
        return load_file(str(file))
    except (SafetensorError, OSError, ValueError) as exc:
        raise ModelError(f"{file}: the file is damaged or truncated ({type(exc).__name__}: {str(exc)[:100]}); "
                         "copy the model again or retrain it") from None
