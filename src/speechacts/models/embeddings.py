"""Frozen sentence embeddings (mean pooling, L2-normalised) of a pretrained encoder -> LogisticRegression."""

from __future__ import annotations

from collections import OrderedDict
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from speechacts.classifier import Classifier
from speechacts.config import EmbeddingsModel
from speechacts.errors import ModelError
from speechacts.models import safe_skops
from speechacts.models.baseline import aligned_proba
from speechacts.models.hf import (
    at_limit,
    length_batches,
    load_pretrained,
    load_weights,
    pick_device,
    quiet,
    resolve_pretrained,
    warn_if_truncated,
)

ENCODER_DIR = "encoder"
HEAD_FILE = "head.skops"
TRAINING_CACHE_SIZE = 100_000  # sentences (1.5 kB each for MiniLM): the whole corpus, several times over


class Encoder:
    """A frozen encoder. With a cache (training), it remembers up to cache_size vectors, the least
    recently used going first, so cross-validation encodes each sentence once, not once per fold;
    a loaded model has none, so a long-running server does not grow."""

    def __init__(self, path: str, max_length: int, batch_size: int, device: str, cache_size: int = 0):
        from transformers import AutoModel, AutoTokenizer

        quiet()
        self.path, self.max_length, self.batch_size = path, max_length, batch_size
        self.tokenizer = load_pretrained(path, AutoTokenizer)
        self.model = load_weights(path, AutoModel).to(device).eval()
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
            for index, batch in length_batches(self.tokenizer, todo, self.batch_size, self.max_length):
                candidates += at_limit(index, batch, self.max_length)
                batch = batch.to(device)
                hidden = self.model(**batch).last_hidden_state
                mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
                pooled = torch.nn.functional.normalize(pooled, dim=-1).float().cpu().numpy()
                for j, i in enumerate(index):
                    vectors[todo[i]] = pooled[j]
        self.remember({t: vectors[t] for t in todo})
        first = {}
        for i, text in enumerate(texts):
            first.setdefault(text, i)
        warn_if_truncated(self.tokenizer, texts, self.max_length, [first[todo[i]] for i in candidates])
        return np.stack([vectors[t] for t in texts]) if texts else np.zeros((0, self.model.config.hidden_size))

    def remember(self, vectors: dict[str, np.ndarray]) -> None:
        """Keep new vectors, dropping the least recently used beyond cache_size."""
        if self.cache_size <= 0:
            return
        self.cache.update(vectors)
        while len(self.cache) > self.cache_size:
            self.cache.popitem(last=False)


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
        self.encoder_ = shared_encoder(resolve_pretrained(cfg.pretrained), cfg.max_length, cfg.batch_size,
                                       pick_device(cfg.device))
        self.head_ = LogisticRegression(C=cfg.C, class_weight=cfg.class_weight, max_iter=cfg.max_iter,
                                        random_state=self.seed).fit(self.features(texts, contexts), list(labels))
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
        return aligned_proba(self.head_.predict_proba(self.features(texts, contexts)), list(self.head_.classes_))

    def _save(self, path: Path) -> None:
        self.encoder_.model.save_pretrained(path / ENCODER_DIR, safe_serialization=True)
        self.encoder_.tokenizer.save_pretrained(path / ENCODER_DIR)
        safe_skops.dump(self.head_, path / HEAD_FILE)

    @classmethod
    def _load(cls, path: Path, meta: dict[str, Any]) -> EmbeddingsClassifier:
        from speechacts.classifier import saved_model_config

        cfg = saved_model_config(path, meta, EmbeddingsModel)
        head = safe_skops.load(path / HEAD_FILE, meta)
        encoder = Encoder(str(path / ENCODER_DIR), cfg.max_length, cfg.batch_size, pick_device(cfg.device))
        return cls(cfg, encoder=encoder, head=head)
