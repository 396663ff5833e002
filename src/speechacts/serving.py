"""The MLflow pyfunc model (models-from-code): any speechacts classifier behind one predict, and
the format of what it reads and answers.

Input: a DataFrame with a `text` column (and, optionally, a `context` column: what a model
trained with context reads beside each sentence, e.g. the sentence before it), a list of
strings, or {"text": [...]}. Parameter: `min_confidence` (default 0). Output: a DataFrame with
`label`, one calibrated probability column per label, and `unsure`, the same for every family.

The logged signature describes the output only. With an input schema of strings, MLflow's server
turns `{"inputs": [null, 1, true]}` into the texts "None", "1" and "True" before the model sees
them; without one, the values arrive as sent and `as_texts` refuses anything that is
not a non-empty string. Every refusal is an MlflowException, which the server answers with status
400 and a message, never a stack trace (it adds one only to other exceptions).

tracking.log_model logs this file as the model's code; MLflow runs it (set_model, at the end) when
it loads the model. train.py imports it for proba_frame, the output example of the signature.
"""

from __future__ import annotations

import logging
import warnings
from typing import Any

import mlflow
import numpy as np
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import INTERNAL_ERROR, INVALID_PARAMETER_VALUE
from mlflow.pyfunc import PythonModel

from speechacts.api import check_confidence, check_texts
from speechacts.errors import SpeechactsError
from speechacts.labels import LABELS, top_labels
from speechacts.sources import MODEL_DIR_ARTIFACT

# predict takes a DataFrame, a list or a dict (see as_texts), so no type hints
warnings.filterwarnings("ignore", message=".*Add type hints to the `predict` method.*")
log = logging.getLogger("speechacts.serving")
EXPECTED = "expected sentences: a 'text' column, a list of strings or {\"text\": [...]}"


class SpeechactsModel(PythonModel):
    def load_context(self, context) -> None:
        from speechacts.classifier import load_model

        self.model = load_model(context.artifacts[MODEL_DIR_ARTIFACT])

    def predict(self, context, model_input, params=None):
        try:
            texts = as_texts(model_input)
            contexts = as_contexts(model_input)
            min_confidence = (params or {}).get("min_confidence", 0.0)
            check_confidence(min_confidence)
        except SpeechactsError as exc:
            raise MlflowException(str(exc), error_code=INVALID_PARAMETER_VALUE) from None
        try:
            return proba_frame(self.model.predict_proba(texts, contexts), min_confidence)
        except Exception as exc:  # the trace goes to the server's log, not to the client
            log.exception("predict failed")
            raise MlflowException(f"the model failed on this input ({type(exc).__name__}); the server log has "
                                  "the details", error_code=INTERNAL_ERROR) from None


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
    frame.insert(0, "label", top_labels(proba))
    frame["unsure"] = proba.max(axis=1) < min_confidence if len(proba) else []
    return frame


mlflow.models.set_model(SpeechactsModel())
