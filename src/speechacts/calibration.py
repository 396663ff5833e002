"""What is done to a model's probabilities after it scores them: label priors, then temperature.

**Label priors.** A model learns p(label | sentence) under its training mix: class-weighted
families (all three by default) behave as if every label were equally frequent, while news is
mostly assessments. Under a shift of label mix alone, Bayes' rule gives the adjusted posterior
p'(y|x) ∝ p(y|x) · π_target(y) / π_train(y). Two ways to know π_target:
- `articles`: the label mix of the labelled articles the model trained on;
- `em`: estimated on the batch being labelled (an article, a file) by the EM procedure of
  Saerens, Latinne & Decaestecker (2002), "Adjusting the outputs of a classifier to new a
  priori probabilities".
The method is chosen by the out-of-fold article metric (train.py), never by the seed article.

**Temperature.** One scalar T fitted on out-of-fold predictions by minimising the negative log
likelihood (Guo et al., 2017): p_T = softmax(log p / T). It moves confidence, never the label.
Expected calibration error (ECE) is measured with 15 equal-width bins on the top probability.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from speechacts.errors import ModelError
from speechacts.labels import LABELS, top_labels

PRIOR_METHODS = ("none", "articles", "em")
FILE = "postprocess.json"
EM_MIN_BATCH = 5  # fewer sentences than this say too little about the label mix: no EM
ECE_BINS = 15
EPS = 1e-12


def uniform() -> np.ndarray:
    return np.full(len(LABELS), 1 / len(LABELS))


def label_mix(labels: list[str]) -> np.ndarray:
    """Label frequencies in LABELS order, smoothed by one so no label has zero prior."""
    counts = np.array([labels.count(label) for label in LABELS], dtype=float) + 1.0
    return counts / counts.sum()


def adjust_prior(proba: np.ndarray, target: np.ndarray, source: np.ndarray) -> np.ndarray:
    """p(y|x) · target(y) / source(y), renormalised per row."""
    weighted = np.asarray(proba, dtype=float) * (np.asarray(target) / np.asarray(source))
    return weighted / np.maximum(weighted.sum(axis=1, keepdims=True), EPS)


def em_prior(proba: np.ndarray, source: np.ndarray, max_iter: int = 100, tol: float = 1e-6) -> np.ndarray:
    """The label mix of a batch, estimated by EM (Saerens et al., 2002): start from the training
    prior, adjust the posteriors to the current estimate, take their mean as the next one."""
    prior = np.asarray(source, dtype=float)
    for _ in range(max_iter):
        new = adjust_prior(proba, prior, source).mean(axis=0)
        new = np.maximum(new, EPS) / np.maximum(new, EPS).sum()
        if np.abs(new - prior).max() < tol:
            return new
        prior = new
    return prior


def apply_temperature(proba: np.ndarray, temperature: float) -> np.ndarray:
    logits = np.log(np.maximum(np.asarray(proba, dtype=float), EPS)) / temperature
    logits -= logits.max(axis=1, keepdims=True)
    exp = np.exp(logits)
    return exp / exp.sum(axis=1, keepdims=True)


def fit_temperature(proba: np.ndarray, labels: list[str]) -> float:
    """The T in [0.05, 20] that minimises the negative log likelihood of the true labels."""
    from scipy.optimize import minimize_scalar

    y = np.array([LABELS.index(label) for label in labels])

    def nll(log_t: float) -> float:
        p = apply_temperature(proba, float(np.exp(log_t)))
        return float(-np.log(np.maximum(p[np.arange(len(y)), y], EPS)).mean())

    result = minimize_scalar(nll, bounds=(np.log(0.05), np.log(20.0)), method="bounded")
    return float(np.exp(result.x))


def top_and_correct(proba: np.ndarray, labels: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Each row's top probability, and whether its label is the true one."""
    proba = np.asarray(proba)
    return proba.max(axis=1), np.array(top_labels(proba)) == np.array(labels)


def reliability(proba: np.ndarray, labels: list[str], bins: int = ECE_BINS) -> list[dict]:
    """Per equal-width bin of the top probability: its range, rows, mean confidence and accuracy."""
    confidence, correct = top_and_correct(proba, labels)
    edges = np.linspace(0, 1, bins + 1)
    index = np.clip(np.digitize(confidence, edges[1:-1]), 0, bins - 1)
    return [{"low": float(edges[b]), "high": float(edges[b + 1]), "rows": int((index == b).sum()),
             "confidence": float(confidence[index == b].mean()) if (index == b).any() else float("nan"),
             "accuracy": float(correct[index == b].mean()) if (index == b).any() else float("nan")}
            for b in range(bins)]


def expected_calibration_error(proba: np.ndarray, labels: list[str], bins: int = ECE_BINS) -> float:
    """Sum over equal-width bins of the top probability: |accuracy - confidence| x share of rows."""
    rows = len(labels)
    return float(sum(b["rows"] / rows * abs(b["accuracy"] - b["confidence"])
                     for b in reliability(proba, labels, bins) if b["rows"]))


def coverage_curve(proba: np.ndarray, labels: list[str], thresholds=None) -> list[dict]:
    """For each confidence threshold: the share of sentences at or above it, and their accuracy."""
    confidence, correct = top_and_correct(proba, labels)
    thresholds = np.round(np.arange(0.2, 1.0, 0.05), 2) if thresholds is None else thresholds
    out = []
    for t in thresholds:
        kept = confidence >= t
        out.append({"threshold": float(t), "coverage": float(kept.mean()),
                    "accuracy": float(correct[kept].mean()) if kept.any() else float("nan")})
    return out


@dataclass
class PostProcess:
    """The prior adjustment and temperature a model applies to its raw probabilities."""

    prior_method: str = "none"  # none | articles | em
    source_prior: list[float] = field(default_factory=lambda: uniform().tolist())  # what the model learned under
    target_prior: list[float] = field(default_factory=lambda: uniform().tolist())  # the articles' mix
    temperature: float = 1.0

    def __post_init__(self):
        if self.prior_method not in PRIOR_METHODS:
            raise ModelError(f"prior method {self.prior_method!r} is not one of {', '.join(PRIOR_METHODS)}")
        for name in ("source_prior", "target_prior"):
            value = getattr(self, name)
            if len(value) != len(LABELS) or min(value) <= 0:
                raise ModelError(f"{name} must hold {len(LABELS)} positive numbers in label order, got {value}")
        if not self.temperature > 0:
            raise ModelError(f"temperature must be positive, got {self.temperature}")

    def adjust(self, proba: np.ndarray, method: str | None = None) -> np.ndarray:
        """The prior adjustment alone (method overrides the saved one)."""
        method = method or self.prior_method
        if method not in PRIOR_METHODS:
            raise ModelError(f"prior method {method!r} is not one of {', '.join(PRIOR_METHODS)}")
        source = np.array(self.source_prior)
        if method == "articles":
            return adjust_prior(proba, np.array(self.target_prior), source)
        if method == "em" and len(proba) >= EM_MIN_BATCH:
            return adjust_prior(proba, em_prior(proba, source), source)
        return np.asarray(proba, dtype=float)

    def __call__(self, proba: np.ndarray, prior_method: str | None = None) -> np.ndarray:
        if len(proba) == 0:
            return np.asarray(proba, dtype=float)
        return apply_temperature(self.adjust(proba, prior_method), self.temperature)

    def save(self, folder: Path) -> None:
        (Path(folder) / FILE).write_text(json.dumps(asdict(self), indent=2), encoding="utf-8")

    @classmethod
    def load(cls, folder: Path) -> PostProcess:
        """The saved post-processing, or the identity for a model saved without one."""
        path = Path(folder) / FILE
        if not path.is_file():
            return cls()
        try:
            tree = json.loads(path.read_text(encoding="utf-8"))
            return cls(**tree)
        except (json.JSONDecodeError, TypeError, UnicodeDecodeError) as exc:
            raise ModelError(f"{path}: unreadable post-processing ({exc}); retrain the model") from None
