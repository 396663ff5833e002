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


def proba_frame(proba: np.ndarray):
    """(n, 5) probabilities -> DataFrame with `label` and one column per label."""
    import pandas as pd

    frame = pd.DataFrame(proba, columns=list(LABELS))
    frame.insert(0, "label", [LABELS[i] for i in proba.argmax(axis=1)])
    return frame
