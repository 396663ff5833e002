"""Frozen sentence embeddings (mean pooling, L2-normalised) of a pretrained encoder -> LogisticRegression.

The head is kept as its arrays (head.json: classes, coefficients, intercepts) and applied with
numpy, so a saved model loads without scikit-learn or skops, and can carry no code."""

from __future__ import annotations

import json
from collections import OrderedDict
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from speechacts.classifier import Classifier
from speechacts.config import EmbeddingsModel
from speechacts.errors import ModelError
from speechacts.labels import LABELS
from speechacts.models import hf

ENCODER_DIR = "encoder"
HEAD_FILE = "head.json"
OLD_HEAD_FILE = "head.skops"  # models saved before head.json
TRAINING_CACHE_SIZE = 100_000  # sentences (1.5 kB each for MiniLM): the whole corpus, several times over


class Encoder:
    """A frozen encoder. With a cache (training), it remembers up to cache_size vectors, the least
    recently used going first, so cross-validation encodes each sentence once, not once per fold;
    a loaded model has none, so a long-running server does not grow."""

    def __init__(self, path: str, max_length: int, batch_size: int, device: str, cache_size: int = 0):
        from sentence_transformers.sentence_transformer.modules import Normalize, Pooling
        from transformers import AutoModel, AutoTokenizer

        hf.quiet()
        self.path, self.max_length, self.batch_size = path, max_length, batch_size
        self.tokenizer = hf.load_pretrained(path, AutoTokenizer)
        self.model = hf.load_weights(path, AutoModel).to(device).eval()
        self.pooling = Pooling(self.model.config.hidden_size, pooling_mode="mean")
        self.normalize = Normalize()
        self.cache_size = cache_size
        self.cache: OrderedDict[str, np.ndarray] = OrderedDict()

    def encode(self, texts: list[str]) -> np.ndarray:
        import torch

        vectors = {t: self.cache[t] for t in texts if t in self.cache}
        for text in vectors:
            self.cache.move_to_end(text)
        todo = list(dict.fromkeys(t for t in texts if t not in vectors))
        device = next(self.model.parameters()).device
        candidates = []
        with torch.inference_mode():
            for index, batch in hf.length_batches(self.tokenizer, todo, self.batch_size, self.max_length):
                candidates += hf.at_limit(index, batch, self.max_length)
                batch = batch.to(device)
                features = {"token_embeddings": self.model(**batch).last_hidden_state,
                            "attention_mask": batch["attention_mask"]}
                pooled = self.normalize(self.pooling(features))["sentence_embedding"].float().cpu().numpy()
                for j, i in enumerate(index):
                    vectors[todo[i]] = pooled[j]
        self.remember({t: vectors[t] for t in todo})
        first = {}
        for i, text in enumerate(texts):
            first.setdefault(text, i)
        hf.warn_if_truncated(self.tokenizer, texts, self.max_length, [first[todo[i]] for i in candidates])
        return np.stack([vectors[t] for t in texts]) if texts else np.zeros((0, self.model.config.hidden_size))

    def remember(self, vectors: dict[str, np.ndarray]) -> None:
        """Keep new vectors, dropping the least recently used beyond cache_size."""
        if self.cache_size <= 0:
            return
        self.cache.update(vectors)
        while len(self.cache) > self.cache_size:
            self.cache.popitem(last=False)


@dataclass
class LinearHead:
    """A fitted LogisticRegression as its arrays: probabilities by numpy, columns in LABELS order."""

    classes: list[str]
    coef: np.ndarray  # (classes, features), or (1, features) for two classes
    intercept: np.ndarray

    @classmethod
    def from_sklearn(cls, fitted) -> LinearHead:
        return cls(list(fitted.classes_), np.asarray(fitted.coef_, dtype=np.float64),
                   np.asarray(fitted.intercept_, dtype=np.float64))

    def predict_proba(self, features: np.ndarray) -> np.ndarray:
        """As LogisticRegression.predict_proba (softmax; the logistic for two classes), in LABELS order."""
        scores = np.asarray(features, dtype=np.float64) @ self.coef.T + self.intercept
        if len(self.classes) == 2:
            positive = 1 / (1 + np.exp(-scores[:, 0]))
            proba = np.stack([1 - positive, positive], axis=1)
        else:
            scores -= scores.max(axis=1, keepdims=True)
            proba = np.exp(scores)
            proba /= proba.sum(axis=1, keepdims=True)
        out = np.zeros((len(proba), len(LABELS)))
        out[:, [LABELS.index(label) for label in self.classes]] = proba
        return out

    def save(self, path: Path) -> None:
        path.write_text(json.dumps({"classes": self.classes, "coef": self.coef.tolist(),
                                    "intercept": self.intercept.tolist()}), encoding="utf-8")


def load_head(path: Path, meta: dict[str, Any]) -> LinearHead:
    """The head of a saved embeddings model (head.json; an older model's head.skops)."""
    file = path / HEAD_FILE
    if not file.is_file() and (path / OLD_HEAD_FILE).is_file():
        from speechacts.models import safe_skops

        return LinearHead.from_sklearn(safe_skops.load(path / OLD_HEAD_FILE, meta))
    try:
        saved = json.loads(file.read_text(encoding="utf-8"))
        head = LinearHead(list(saved["classes"]), np.array(saved["coef"], dtype=np.float64),
                          np.array(saved["intercept"], dtype=np.float64))
    except FileNotFoundError:
        raise ModelError(f"{file}: missing; the model directory is incomplete, retrain it") from None
    except (ValueError, KeyError, TypeError) as exc:
        raise ModelError(f"{file}: not a saved head (classes, coef, intercept): {exc}; retrain the model") from None
    if not set(head.classes) <= set(LABELS) or head.coef.ndim != 2 or len(head.intercept) != len(head.coef):
        raise ModelError(f"{file}: classes {head.classes} or array shapes do not fit this speechacts' labels "
                         f"{list(LABELS)}; retrain the model")
    return head


@lru_cache(maxsize=2)
def shared_encoder(path: str, max_length: int, batch_size: int, device: str) -> Encoder:
    """The encoder training uses: shared by the folds and the final fit of one job, with a cache."""
    return Encoder(path, max_length, batch_size, device, cache_size=TRAINING_CACHE_SIZE)


class EmbeddingsClassifier(Classifier):
    family = "embeddings"

    def __init__(self, cfg: EmbeddingsModel | None = None, seed: int = 0, encoder: Encoder | None = None, head=None):
        self.cfg = cfg or EmbeddingsModel()
        self.seed = seed
        self.encoder_ = encoder
        self.head_ = head

    def fit(self, texts: list[str], labels: list[str], contexts: list[str] | None = None, eval_set=None,
            log_metrics=None, groups=None) -> EmbeddingsClassifier:
        from sklearn.linear_model import LogisticRegression

        cfg = self.cfg
        self.encoder_ = shared_encoder(hf.resolve_pretrained(cfg.pretrained), cfg.max_length, cfg.batch_size,
                                       hf.pick_device(cfg.device))
        head = LogisticRegression(C=cfg.C, class_weight=cfg.class_weight, max_iter=cfg.max_iter,
                                  random_state=self.seed).fit(self.features(texts, contexts), list(labels))
        self.head_ = LinearHead.from_sklearn(head)
        return self

    def features(self, texts: list[str], contexts: list[str] | None) -> np.ndarray:
        """The sentence's embedding; with a context, the context's embedding beside it (zeros
        where there is none)."""
        sentences = self.encoder_.encode(list(texts))
        if self.context == "none":
            return sentences
        contexts = list(contexts or [""] * len(texts))
        around = np.zeros_like(sentences)
        given = [i for i, c in enumerate(contexts) if c]
        if given:
            around[given] = self.encoder_.encode([contexts[i] for i in given])
        return np.hstack([sentences, around])

    def _predict_proba(self, texts: list[str], contexts: list[str] | None = None) -> np.ndarray:
        if self.head_ is None:
            raise ModelError("the embeddings classifier is not fitted; call fit() or load a saved model")
        return self.head_.predict_proba(self.features(texts, contexts))

    def _save(self, path: Path) -> None:
        self.encoder_.model.save_pretrained(path / ENCODER_DIR, safe_serialization=True)
        self.encoder_.tokenizer.save_pretrained(path / ENCODER_DIR)
        self.head_.save(path / HEAD_FILE)

    def _export(self, path: Path, check) -> None:
        if self.cfg.export != "none":
            from speechacts.models import onnx

            onnx.export_checked(self, self.encoder_.model, self.encoder_.tokenizer, path, "last_hidden_state", check)

    @classmethod
    def _load(cls, path: Path, meta: dict[str, Any]) -> EmbeddingsClassifier:
        from speechacts.classifier import saved_model_config

        cfg = saved_model_config(path, meta, EmbeddingsModel)
        head = load_head(path, meta)
        encoder = Encoder(str(path / ENCODER_DIR), cfg.max_length, cfg.batch_size, hf.pick_device(cfg.device))
        return cls(cfg, encoder=encoder, head=head)
