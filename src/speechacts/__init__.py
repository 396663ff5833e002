"""speechacts: classify the speech act of sentences in diplomatic news."""

from speechacts.labels import LABELS

__version__ = "0.1.0"
__all__ = ["LABELS", "__version__"]
