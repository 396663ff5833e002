"""Where the MLflow store is, and whether it can be used: the one tracking-URI resolver, the
database file of a local SQLite store, the health probe of a server. It imports no mlflow, so
the labelling path (api.py, sources.py) asks these questions without paying for that import.
"""

from __future__ import annotations

import os
import sqlite3
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import unquote

from speechacts.errors import TrackingError

DEFAULT_STORE = "sqlite:///mlflow.db"  # MLflow's own default (in the working directory), and the project's
SQLITE_HEADER = b"SQLite format 3\x00"


def tracking_uri(given: str | None = None, configured: str | None = None) -> str:
    """The store a command uses: the URI given (--tracking-uri), else the config's tracking.uri,
    else $MLFLOW_TRACKING_URI, else ./mlflow.db."""
    return given or configured or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_STORE


def sqlite_file(uri: str) -> Path | None:
    """The database file of a plain sqlite:/// URI, else None (a server, a query string, :memory:)."""
    if not uri.startswith("sqlite:///") or "?" in uri or uri.endswith(":memory:"):
        return None
    return Path(unquote(uri.removeprefix("sqlite:///")))


def check_sqlite_file(db: Path, uri: str) -> None:
    """Refuse a file that is not an SQLite database before sqlite3 or MLflow open it (a missing one is let be)."""
    if not db.exists():
        return
    try:
        with open(db, "rb") as f:
            head = f.read(len(SQLITE_HEADER))
    except OSError as exc:
        raise TrackingError(f"tracking store {uri}: cannot read {db} ({exc.strerror})") from None
    if head and head != SQLITE_HEADER:
        raise TrackingError(f"tracking store {uri}: {db} is not an SQLite database (it starts with {head[:8]!r}); "
                            "point --tracking-uri (or MLFLOW_TRACKING_URI) at an MLflow store")


def read_only(db: Path) -> sqlite3.Connection:
    """A read-only connection to a local database: reading never creates or changes a store."""
    return sqlite3.connect(f"{db.resolve().as_uri()}?mode=ro", uri=True)


def probe(uri: str, timeout: float = 5.0) -> None:
    """Fail fast on a tracking server that does not answer, instead of MLflow's long retries."""
    if not uri.startswith(("http://", "https://")):
        return
    try:
        urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=timeout).close()
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise TrackingError(f"tracking server {uri} is unreachable ({reason}); start it, or unset "
                            "MLFLOW_TRACKING_URI / tracking.uri to use the local store ./mlflow.db") from None

