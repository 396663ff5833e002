"""Which store a command uses, and what a store URI names, without importing mlflow."""

from __future__ import annotations

import pytest

from speechacts.store import DEFAULT_STORE, sqlite_file, tracking_uri


@pytest.mark.parametrize("given, configured, env, expected", [
    ("sqlite:///given.db", "sqlite:///config.db", "sqlite:///env.db", "sqlite:///given.db"),
    (None, "sqlite:///config.db", "sqlite:///env.db", "sqlite:///config.db"),
    (None, None, "sqlite:///env.db", "sqlite:///env.db"),
    (None, None, None, DEFAULT_STORE),
])
def test_the_argument_wins_then_the_config_then_the_environment_then_mlflow_db(given, configured, env, expected,
                                                                                monkeypatch):
    if env is None:
        monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    else:
        monkeypatch.setenv("MLFLOW_TRACKING_URI", env)
    assert tracking_uri(given, configured) == expected


@pytest.mark.parametrize("uri, path", [
    ("sqlite:///mlflow.db", "mlflow.db"),
    ("sqlite:////tmp/a%20b/mlflow.db", "/tmp/a b/mlflow.db"),
    ("sqlite:///mlflow.db?timeout=5", None),
    ("sqlite:///:memory:", None),
    ("http://127.0.0.1:5000", None),
    ("postgresql://u@h/db", None),
])
def test_only_a_plain_sqlite_uri_names_a_local_file(uri, path):
    found = sqlite_file(uri)
    assert (None if found is None else str(found)) == path
