"""Inputs and outputs of prediction, shared by the Python API, the CLI and the server."""

from __future__ import annotations

from typing import Any

import numpy as np

from speechacts.api import check_texts
from speechacts.errors import SpeechactsError
from speechacts.labels import LABELS


def as_texts(model_input: Any) -> list[str]:
    """A DataFrame (`text` column), Series, list or single string -> list of non-empty texts."""
    import pandas as pd

    if isinstance(model_input, pd.DataFrame):
        if "text" in model_input.columns:
            values = model_input["text"]
        elif model_input.shape[1] == 1:
            values = model_input.iloc[:, 0]
        else:
            raise SpeechactsError(f"expected a 'text' column, got columns {list(model_input.columns)}")
        texts = values.tolist()
    elif isinstance(model_input, str):
        texts = [model_input]
    elif isinstance(model_input, dict) and "text" in model_input:
        texts = list(model_input["text"]) if not isinstance(model_input["text"], str) else [model_input["text"]]
    else:
        texts = list(model_input)
    if not texts:
        raise SpeechactsError("no texts to label")
    return check_texts(texts)


def proba_frame(proba: np.ndarray):
    """(n, 5) probabilities -> DataFrame with `label` and one column per label."""
    import pandas as pd

    frame = pd.DataFrame(proba, columns=list(LABELS))
    frame.insert(0, "label", [LABELS[i] for i in proba.argmax(axis=1)])
    return frame
