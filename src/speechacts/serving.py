"""The MLflow pyfunc model (models-from-code): any speechacts classifier behind one predict.

Input: a DataFrame with a `text` column (and, optionally, a `context` column: what a model
trained with context reads beside each sentence, e.g. the sentence before it), a list of
strings, or {"text": [...]}. Parameter: `min_confidence` (default 0). Output: a DataFrame with
`label`, one calibrated probability column per label, and `unsure`, the same for every family.

The logged signature describes the output only. With an input schema of strings, MLflow's server
turns `{"inputs": [null, 1, true]}` into the texts "None", "1" and "True" before the model sees
them; without one, the values arrive as sent and `inference.as_texts` refuses anything that is
not a non-empty string. Every refusal is an MlflowException, which the server answers with status
400 and a message, never a stack trace (it adds one only to other exceptions).
"""

from __future__ import annotations

import logging
import warnings

import mlflow
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import INTERNAL_ERROR, INVALID_PARAMETER_VALUE
from mlflow.pyfunc import PythonModel

# predict takes a DataFrame, a list or a dict (see inference.as_texts), so no type hints
warnings.filterwarnings("ignore", message=".*Add type hints to the `predict` method.*")
log = logging.getLogger("speechacts.serving")


class SpeechactsModel(PythonModel):
    def load_context(self, context) -> None:
        from speechacts.classifier import load_model

        self.model = load_model(context.artifacts["model_dir"])

    def predict(self, context, model_input, params=None):
        from speechacts.api import check_confidence
        from speechacts.errors import SpeechactsError
        from speechacts.inference import as_contexts, as_texts, proba_frame

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


mlflow.models.set_model(SpeechactsModel())
