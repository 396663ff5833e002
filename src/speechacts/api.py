"""The public API: load a saved classifier of any family and label sentences or whole articles.

    from speechacts import load_classifier
    classifier = load_classifier()                  # models:/speechacts-classifier@champion
    classifier.predict(["Russia denies any such plans."])[0].label     # 'denial'

What a source can be, and how it is found, is sources.py; the pyfunc model that MLflow serves is
serving.py; the `speechacts predict` command is predict.py.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from speechacts.errors import DataError
from speechacts.labels import LABELS, top_labels
from speechacts.sources import DEFAULT_SOURCE, resolve

if TYPE_CHECKING:
    import numpy as np

    from speechacts.classifier import Classifier


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

    def __init__(self, model: Classifier, model_dir: Path, source: str):
        self.model = model
        self.model_dir = model_dir
        self.source = source

    @property
    def family(self) -> str:
        return self.model.family

    @property
    def runtime(self) -> str:
        """onnx (ONNX Runtime), or torch: the family's own code (for the baseline, numpy)."""
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
        return [Prediction(text, label, dict(zip(LABELS, row)), unsure=max(row) < min_confidence)
                for text, label, row in zip(texts, top_labels(proba), proba.tolist())]

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
