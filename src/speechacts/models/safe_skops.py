"""Skops files that hold only the exact types of the project's own scikit-learn models.

skops trusts every scikit-learn estimator by default, and FunctionTransformer among them can
call any function a file names. So before skops builds anything, the file's schema is read as
plain JSON and every type it names (classes, types, functions, methods) must be on ALLOWED;
anything else is refused with its name, and nothing from the file is imported or run.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any
from zipfile import ZIP_DEFLATED

from speechacts.errors import ModelError

# What the baseline pipeline and the embeddings head are made of (checked on save too).
ALLOWED = frozenset({
    "builtins.dict", "builtins.list", "builtins.tuple", "builtins.str",
    "numpy.ndarray", "numpy.float64",
    "sklearn.pipeline.Pipeline", "sklearn.pipeline.FeatureUnion",
    "sklearn.compose._column_transformer.ColumnTransformer", "builtins.slice",  # a baseline with context
    "sklearn.feature_extraction.text.HashingVectorizer", "sklearn.feature_extraction.text.TfidfTransformer",
    "sklearn.linear_model._logistic.LogisticRegression",
})
NEVER_IMPORTED = {"JsonNode"}  # skops builds these with json.loads; the type they name is only a label


def types_in(schema: Any) -> set[str]:
    """Every type a skops schema names, found without importing anything."""
    found: set[str] = set()
    stack = [schema]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            if "__class__" in node and "__module__" in node and node.get("__loader__") not in NEVER_IMPORTED:
                name = f"{node['__module__']}.{node['__class__']}"
                found.add(name)
                if node.get("__loader__") == "MethodNode":  # a bound method: the owner's class and the method
                    found.add(f"{name}.{(node.get('content') or {}).get('func')}")
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return found


def read_schema(file: Path) -> Any:
    """The schema.json of a skops archive, or a ModelError saying the file is damaged."""
    try:
        with zipfile.ZipFile(file) as archive:
            return json.loads(archive.read("schema.json"))
    except FileNotFoundError:
        raise ModelError(f"{file}: model file missing; the model directory is incomplete, retrain it") from None
    except (zipfile.BadZipFile, KeyError, ValueError, OSError, EOFError) as exc:
        raise ModelError(f"{file}: the file is damaged or truncated ({type(exc).__name__}: "
                         f"{str(exc)[:100]}); copy the model again or retrain it") from None


def refused_types(file: Path) -> list[str]:
    """The types in a skops file that are not on ALLOWED."""
    return sorted(types_in(read_schema(file)) - ALLOWED)


def dump(obj: Any, file: Path) -> None:
    """Write obj as a skops file, and refuse to leave one that `load` would refuse."""
    import skops.io as sio

    sio.dump(obj, file, compression=ZIP_DEFLATED)
    refused = refused_types(file)
    if refused:
        file.unlink()
        raise ModelError(f"{file}: the model holds types speechacts does not load ({', '.join(refused)}); "
                         "add them to speechacts.models.safe_skops.ALLOWED if they are safe")


def load(file: Path, meta: dict[str, Any]) -> Any:
    """Load a skops file whose every type is on ALLOWED; refuse any other by name, before anything runs."""
    refused = refused_types(file)
    if refused:
        shown = ", ".join(refused[:3]) + (f" and {len(refused) - 3} more" if len(refused) > 3 else "")
        raise ModelError(f"{file}: refused to load type(s) {shown}: speechacts models never hold them, so the "
                         "file was not written by `speechacts train` or was altered; nothing from it was run")
    import skops.io as sio

    try:
        return sio.load(file, trusted=sorted(ALLOWED))
    except Exception as exc:  # skops raises many kinds for a file from another version
        saved = meta.get("versions", {}).get("scikit-learn", "?") if isinstance(meta, dict) else "?"
        from sklearn import __version__ as installed

        if saved == installed:
            raise ModelError(f"{file}: the file is damaged ({type(exc).__name__}: {str(exc)[:100]}); copy the "
                             "model again or retrain it") from None
        raise ModelError(f"{file}: cannot load ({type(exc).__name__}: {str(exc)[:100]}); it was saved with "
                         f"scikit-learn {saved} and this is {installed}: retrain it") from None
