"""Inputs and outputs of prediction, shared by the Python API, the CLI and the server."""

from __future__ import annotations

from typing import Any

import numpy as np

from speechacts.api import check_texts
from speechacts.errors import SpeechactsError
from speechacts.labels import LABELS

EXPECTED = "expected sentences: a 'text' column, a list of strings or {\"text\": [...]}"


def as_texts(model_input: Any) -> list[str]:
    """A DataFrame (`text` column), array, Series, list, {"text": [...]} or single string -> list of
    non-empty texts; anything else, and any value that is not a non-empty string, is refused."""
    import pandas as pd

    if isinstance(model_input, pd.DataFrame):
        if "text" in model_input.columns:
            values = model_input["text"].tolist()
        elif model_input.shape[1] == 1:
            values = model_input.iloc[:, 0].tolist()
        else:
            raise SpeechactsError(f"expected a 'text' column, got columns {list(model_input.columns)[:10]}")
    elif isinstance(model_input, dict):
        if list(model_input) != ["text"]:
            raise SpeechactsError(f"{EXPECTED}; got keys {list(model_input)[:10]}")
        values = sequence(model_input["text"])
    else:
        values = sequence(model_input)
    if not values:
        raise SpeechactsError("no texts to label")
    return check_texts(values)


def sequence(value: Any) -> list:
    """A string, a 1-d array or a list as a list of values."""
    import pandas as pd

    if isinstance(value, str):
        return [value]
    if isinstance(value, np.ndarray):
        if value.ndim > 1:
            raise SpeechactsError(f"{EXPECTED}; got a {value.ndim}-dimensional array")
        return [value.item()] if value.ndim == 0 else value.tolist()
    if isinstance(value, list | tuple | pd.Series):
        return list(value)
    raise SpeechactsError(f"{EXPECTED}; got a {type(value).__name__}")


def as_contexts(model_input: Any) -> list[str] | None:
    """The optional `context` column of a DataFrame (missing cells read as no context), else None."""
    import pandas as pd

    if not isinstance(model_input, pd.DataFrame) or "context" not in model_input.columns:
        return None
    contexts = []
    for i, value in enumerate(model_input["context"].tolist(), 1):
        if value is None or (isinstance(value, float) and value != value):
            value = ""
        if not isinstance(value, str):
            raise SpeechactsError(f"context {i} is a {type(value).__name__}, not a string")
        contexts.append(value)
    return contexts


def proba_frame(proba: np.ndarray, min_confidence: float = 0.0):
    """(n, 5) probabilities -> DataFrame with `label`, one column per label, and `unsure` (the
    label's probability is below min_confidence)."""
    import pandas as pd

    frame = pd.DataFrame(proba, columns=list(LABELS))
    frame.insert(0, "label", [LABELS[i] for i in proba.argmax(axis=1)])
    frame["unsure"] = proba.max(axis=1) < min_confidence if len(proba) else []
    return frame
