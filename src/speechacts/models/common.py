"""Helpers that more than one model family uses."""

from __future__ import annotations

import numpy as np

from speechacts.labels import LABELS


def aligned_proba(proba: np.ndarray, classes: list[str]) -> np.ndarray:
    """Reorder probability columns to LABELS; a label unseen in training gets 0."""
    out = np.zeros((proba.shape[0], len(LABELS)))
    for j, label in enumerate(classes):
        out[:, LABELS.index(label)] = proba[:, j]
    return out
