"""Model families, one file each; all follow `speechacts.classifier.Classifier`.

FAMILIES is the registry: a family's name -> where its class is. The class is imported only when
that family is built or loaded, so a command pays for torch or scikit-learn only when its family
needs them. A new family: its file here, its line below, and its config section in config.py
(a schema with `family: Literal[NAME]`, added to ModelConfig).
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING

from speechacts.errors import ModelError

if TYPE_CHECKING:
    from speechacts.classifier import Classifier

FAMILIES = {
    "baseline": "speechacts.models.baseline:BaselineClassifier",
    "transformer": "speechacts.models.transformer:TransformerClassifier",
    "embeddings": "speechacts.models.embeddings:EmbeddingsClassifier",
}


def family_class(family: str) -> type[Classifier]:
    """The Classifier subclass of a family, imported now."""
    if family not in FAMILIES:
        raise ModelError(f"unknown model family {family!r}; expected one of {', '.join(FAMILIES)}")
    module, name = FAMILIES[family].split(":")
    return getattr(import_module(module), name)
