"""TF-IDF of hashed word and character n-grams -> LogisticRegression, one named-step Pipeline."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from sklearn.compose import ColumnTransformer
from sklearn.feature_extraction.text import HashingVectorizer, TfidfTransformer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import FeatureUnion, Pipeline

from speechacts.classifier import Classifier
from speechacts.config import BaselineModel
from speechacts.errors import ModelError
from speechacts.labels import LABELS
from speechacts.models import safe_skops

MODEL_FILE = "pipeline.skops"


def tfidf(analyzer: str, ngram_range: tuple[int, int], cfg: BaselineModel) -> Pipeline:
    """Hashed n-gram counts -> TF-IDF. Hashing keeps no vocabulary, so the saved model is a few
    arrays: a 40k-entry vocabulary made skops spend 3 s saving and 1.6 s loading it."""
    counts = HashingVectorizer(analyzer=analyzer, ngram_range=tuple(ngram_range), n_features=2**cfg.hash_bits,
                               alternate_sign=False, norm=None, lowercase=True, strip_accents="unicode")
    return Pipeline([("counts", counts), ("tfidf", TfidfTransformer(sublinear_tf=cfg.sublinear_tf))])


def make_pipeline(cfg: BaselineModel, seed: int) -> Pipeline:
    """Sentence features; with a context, the context's word n-grams as separate features of
    their own (a column transformer over a frame of `text` and `context`)."""
    if cfg.context == "none":
        features = FeatureUnion([("word", tfidf("word", cfg.word_ngram_range, cfg)),
                                 ("char", tfidf("char_wb", cfg.char_ngram_range, cfg))])
    else:
        features = ColumnTransformer([("word", tfidf("word", cfg.word_ngram_range, cfg), "text"),
                                      ("char", tfidf("char_wb", cfg.char_ngram_range, cfg), "text"),
                                      ("context", tfidf("word", cfg.word_ngram_range, cfg), "context")])
    clf = LogisticRegression(C=cfg.C, class_weight=cfg.class_weight, solver=cfg.solver, max_iter=cfg.max_iter,
                             random_state=seed)
    return Pipeline([("features", features), ("classifier", clf)])


def aligned_proba(proba: np.ndarray, classes: list[str]) -> np.ndarray:
    """Reorder probability columns to LABELS; a label unseen in training gets 0."""
    out = np.zeros((proba.shape[0], len(LABELS)))
    for j, label in enumerate(classes):
        out[:, LABELS.index(label)] = proba[:, j]
    return out


class BaselineClassifier(Classifier):
    family = "baseline"

    def __init__(self, cfg: BaselineModel | None = None, seed: int = 0, pipeline: Pipeline | None = None):
        self.cfg = cfg
        self.seed = seed
        self.pipeline_ = pipeline

    def fit(self, texts: list[str], labels: list[str], contexts: list[str] | None = None, eval_set=None,
            log_metrics=None, groups=None) -> BaselineClassifier:
        self.cfg = self.cfg or BaselineModel()
        self.pipeline_ = make_pipeline(self.cfg, self.seed).fit(self.inputs(texts, contexts), list(labels))
        return self

    def inputs(self, texts: list[str], contexts: list[str] | None):
        """What the pipeline reads: the texts, or a frame of texts and contexts."""
        if self.context == "none":
            return list(texts)
        import pandas as pd

        return pd.DataFrame({"text": list(texts), "context": list(contexts or [""] * len(texts))})

    def _predict_proba(self, texts: list[str], contexts: list[str] | None = None) -> np.ndarray:
        if self.pipeline_ is None:
            raise ModelError("the baseline classifier is not fitted; call fit() or load a saved model")
        proba = self.pipeline_.predict_proba(self.inputs(texts, contexts))
        return aligned_proba(proba, list(self.pipeline_.classes_))

    def _save(self, path: Path) -> None:
        safe_skops.dump(self.pipeline_, path / MODEL_FILE)

    @classmethod
    def _load(cls, path: Path, meta: dict[str, Any]) -> BaselineClassifier:
        cfg = BaselineModel(**meta["config"]["model"]) if meta.get("config", {}).get("model") else None
        return cls(cfg, pipeline=safe_skops.load(path / MODEL_FILE, meta))

