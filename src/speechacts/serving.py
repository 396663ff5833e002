"""The MLflow pyfunc model (models-from-code): any speechacts classifier behind one predict.

Input: a DataFrame with a `text` column (or a list of strings). Output: a DataFrame with
`label` and one probability column per label, the same for every model family.
"""

from __future__ import annotations

import warnings

import mlflow
from mlflow.pyfunc import PythonModel

# predict takes a DataFrame, a list or a dict (see inference.as_texts), so no type hints
warnings.filterwarnings("ignore", message=".*Add type hints to the `predict` method.*")


class SpeechactsModel(PythonModel):
    def load_context(self, context) -> None:
        from speechacts.classifier import load_model

        self.model = load_model(context.artifacts["model_dir"])

    def predict(self, context, model_input, params=None):
        from speechacts.inference import as_texts, proba_frame

        texts = as_texts(model_input)
        return proba_frame(self.model.predict_proba(texts))


mlflow.models.set_model(SpeechactsModel())
