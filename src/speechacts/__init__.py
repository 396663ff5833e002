"""speechacts: classify the speech act of sentences in diplomatic news."""

from speechacts.labels import LABELS

__version__ = "0.1.0"
__all__ = ["LABELS", "__version__", "load_classifier"]


def __getattr__(name: str):
    """`speechacts.load_classifier` imports the API on first use, so `import speechacts` stays fast."""
    if name == "load_classifier":
        from speechacts.api import load_classifier

        return load_classifier
    raise AttributeError(f"module 'speechacts' has no attribute {name!r}")
