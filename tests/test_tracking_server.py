"""The project against a real `mlflow server` on 127.0.0.1: SQL backend store, artifacts proxied by the
server into --artifacts-destination. Train, register, alias, load models:/...@champion through the
server, compare; once with a SQLite backend, once with a PostgreSQL instance the test starts itself."""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from conftest import SENTENCES, train_and_register

pytestmark = pytest.mark.slow

CHAMPION = "models:/speechacts-classifier@champion"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def mlflow_server(backend: str, folder: Path) -> Iterator[str]:
    """`mlflow server` on a free port of 127.0.0.1, serving artifacts from folder/artifacts; yields its URL."""
    port, url = free_port(), None
    log = open(folder / "mlflow-server.log", "w")
    server = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", backend,
         "--artifacts-destination", (folder / "artifacts").as_uri(), "--host", "127.0.0.1", "--port", str(port),
         "--workers", "1"],
        cwd=folder, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 180
        while url is None:
            if server.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"mlflow server did not start:\n{(folder / 'mlflow-server.log').read_text()[-3000:]}")
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2).close()
                url = f"http://127.0.0.1:{port}"
            except OSError:
                time.sleep(0.5)
        yield url
    finally:
        os.killpg(server.pid, signal.SIGTERM)  # the server and its workers
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
        log.close()


def postgres_bin() -> Path | None:
    """The folder of initdb and pg_ctl: Debian's /usr/lib/postgresql/<version>/bin, newest first, else PATH."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[-3]))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb and shutil.which("pg_ctl") else None


@contextmanager
def postgres() -> Iterator[str]:
    """A PostgreSQL instance of its own, on a Unix socket only (no TCP port), with an empty database `mlflow`;
    yields its SQLAlchemy URL. PostgreSQL refuses to run as root, so as root it runs as the `postgres` user."""
    bin_dir = postgres_bin()
    if bin_dir is None:
        pytest.skip("PostgreSQL is not installed (no initdb in /usr/lib/postgresql/*/bin or on PATH); "
                    "`apt-get install postgresql` (.ci/run does) to run this test")
    folder = Path(tempfile.mkdtemp(prefix="speechacts-pg-"))  # not pytest's tmp: root-only, the server could not enter it
    as_user = []
    if os.geteuid() == 0:
        user = next((u for u in ("postgres", "nobody") if name_exists(u)), None)
        if user is None:
            pytest.fail("running as root, and neither a postgres nor a nobody user exists to run PostgreSQL as")
        os.chown(folder, pwd.getpwnam(user).pw_uid, pwd.getpwnam(user).pw_gid)
        as_user = ["runuser", "-u", user, "--"]
    data, port = folder / "data", 5432  # the port only names the socket file in folder

    def pg(*args):
        subprocess.run(as_user + [str(bin_dir / args[0]), *map(str, args[1:])], cwd=folder, check=True,
                       capture_output=True, text=True)

    try:
        pg("initdb", "-D", data, "-U", "postgres", "--auth=trust", "--no-locale", "-E", "UTF8")
        pg("pg_ctl", "-D", data, "-l", folder / "postgres.log", "-w", "-o",
           f"-k {folder} -c listen_addresses='' -p {port}", "start")
        try:
            pg("createdb", "-h", folder, "-p", port, "-U", "postgres", "mlflow")
            yield f"postgresql+psycopg2://postgres@/mlflow?host={folder}&port={port}"
        finally:
            pg("pg_ctl", "-D", data, "-m", "fast", "-w", "stop")
    except subprocess.CalledProcessError as exc:
        pytest.fail(f"PostgreSQL: {' '.join(exc.cmd)} failed: {exc.stderr[-2000:]}")
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def name_exists(user: str) -> bool:
    try:
        pwd.getpwnam(user)
        return True
    except KeyError:
        return False


@pytest.fixture
def restore_mlflow_uri():
    """Training and compare point MLflow at the server; point it back when the server is gone."""
    import mlflow

    previous = mlflow.get_tracking_uri()
    yield
    mlflow.set_tracking_uri(previous)


def round_trip(url: str, folder: Path) -> None:
    """Train and register through the server, alias @champion, load it through the server, compare."""
    import mlflow

    from speechacts import compare
    from speechacts.api import load_classifier

    registered = train_and_register(folder, store=url)
    # artifacts went through the server (mlflow-artifacts:/ URIs) into --artifacts-destination
    run = mlflow.MlflowClient(url).get_run(registered.result.run_id)
    assert run.info.artifact_uri.startswith("mlflow-artifacts:/")
    assert list((folder / "artifacts").rglob("MLmodel")) and not (folder / "mlruns").exists()

    classifier = load_classifier(CHAMPION, tracking_uri=url)
    assert (folder / "artifacts") not in classifier.model_dir.parents  # downloaded through the server
    local = load_classifier(registered.model_dir)
    assert [p.label for p in classifier.predict(SENTENCES)] == [p.label for p in local.predict(SENTENCES)]
    assert (classifier.predict_proba(SENTENCES) == local.predict_proba(SENTENCES)).all()

    rows = compare.run("tests", url)
    assert [r.name for r in rows if r.family != "reference"] == ["baseline"]
    assert Path("outputs/compare-tests.png").is_file()


def test_sqlite_backend_round_trip(tmp_path, monkeypatch, restore_mlflow_uri):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    with mlflow_server(f"sqlite:///{tmp_path / 'server.db'}", tmp_path) as url:
        round_trip(url, tmp_path)


def test_postgresql_backend_round_trip(tmp_path, monkeypatch, restore_mlflow_uri):
    pytest.importorskip("psycopg2", reason="psycopg2 is missing: install the postgres extra (pip install -e '.[dev]')")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    with postgres() as database, mlflow_server(database, tmp_path) as url:
        round_trip(url, tmp_path)
        import sqlalchemy  # the runs and the registry are in PostgreSQL

        engine = sqlalchemy.create_engine(database)
        with engine.connect() as con:
            assert con.execute(sqlalchemy.text("SELECT count(*) FROM registered_models")).scalar() == 1
            assert con.execute(sqlalchemy.text("SELECT count(*) FROM runs")).scalar() >= 3  # parent + 2 folds
        engine.dispose()
