"""Writing to MLflow, and reading runs back: runs, metrics, artifacts, the dataset, registering
the model. The other modules that talk to MLflow: sources.py reads the registry (with MLflow where
its direct SQLite read does not cover the case), serving.py is the pyfunc model that MLflow loads.
Which store: store.tracking_uri.

Layout of one training job: a parent run (params = flattened resolved config; tags = family,
recipe, git commit, package versions; metrics = aggregates `cv_<metric>` with `_ci_low` and
`_ci_high`, `seed_<metric>` for the real-text check, `ref_*` for the references) and one
child run per fold with the same metric names, unprefixed.

Every run also records the process that owns it (tags `process.host`, `process.pid`,
`process.started`) and ends with a true status: FINISHED; FAILED with the error as tag
`end_reason`; KILLED with the signal as `end_reason`. Runs whose process died without closing
them (SIGKILL, a crash of the interpreter) are marked KILLED by the next command that opens the
store. A local SQLite store's schema is created once, under a file lock beside the database.
"""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import tempfile
import time
import warnings
from collections.abc import Iterator
from contextlib import closing, contextmanager, nullcontext
from pathlib import Path
from typing import Any

import mlflow
import requests
import sqlalchemy.exc
from mlflow.exceptions import MlflowException

from speechacts import store
from speechacts.config import TrackingConfig
from speechacts.errors import Terminated, TrackingError
from speechacts.sources import MODEL_DIR_ARTIFACT
from speechacts.store import check_sqlite_file, sqlite_file

os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
PACKAGE_DIR = Path(__file__).resolve().parent
SERVING_CODE = PACKAGE_DIR / "serving.py"
HOST_TAG, PID_TAG, STARTED_TAG, END_REASON_TAG = "process.host", "process.pid", "process.started", "end_reason"
LOCK_TIMEOUT_S = 300  # creating the schema takes seconds; a lock held longer is stuck
# what a store that cannot be reached or written raises through MLflow: MLflow's own errors, a
# database's (sqlalchemy), a server's (requests), the file system's; anything else is a bug
STORE_ERRORS = (MlflowException, sqlalchemy.exc.SQLAlchemyError, requests.exceptions.RequestException, OSError)
log = logging.getLogger(__name__)


def connect(cfg: TrackingConfig) -> str:
    """Point MLflow at the store (set up once, under a lock), close the runs of dead processes,
    select the experiment; refuse an unusable store clearly."""
    uri = store.tracking_uri(configured=cfg.uri)
    db = sqlite_file(uri)
    if db is not None:
        folder = db.parent
        if not folder.is_dir() or not os.access(folder, os.W_OK):
            raise TrackingError(f"tracking store {uri}: folder {folder} is missing or not writable; set "
                                "tracking.uri (or MLFLOW_TRACKING_URI) to a writable sqlite:/// path or a server")
        check_sqlite_file(db, uri)
    store.probe(uri)
    mlflow.set_tracking_uri(uri)
    try:
        with store_lock(db):
            client = mlflow.MlflowClient(uri)
            client.search_experiments(max_results=1)  # MLflow creates or upgrades the schema here
            if db is not None and client.get_experiment_by_name(cfg.experiment) is None:
                # artifacts beside the database, not in whatever folder the job runs from
                root = (folder / "mlruns").resolve().as_uri()
                client.create_experiment(cfg.experiment, artifact_location=f"{root}/{cfg.experiment}")
        end_dead_runs(client)
        experiment = mlflow.set_experiment(cfg.experiment)
    except STORE_ERRORS as exc:  # a server that is down raises from requests, a bad file from sqlalchemy
        raise TrackingError(f"tracking store {uri} is unreachable or not writable: "
                            f"{type(exc).__name__}: {str(exc).splitlines()[0][:300]}") from None
    return experiment.experiment_id


def store_lock(db: Path | None):
    """A lock on a file beside a local database, held while its schema is created: N processes that
    open a new store at once would otherwise all run MLflow's migrations, and all but one fail."""
    if db is None:
        return nullcontext()
    from filelock import FileLock, Timeout

    lock = FileLock(f"{db}.lock", timeout=LOCK_TIMEOUT_S)

    @contextmanager
    def held():
        try:
            lock.acquire()
        except Timeout:
            raise TrackingError(f"{db}.lock: another process has held the store's set-up lock for "
                                f"{LOCK_TIMEOUT_S} s; if none is running, delete the lock file") from None
        try:
            yield
        finally:
            lock.release()

    return held()


def process_tags() -> dict[str, str]:
    """The host, pid and start time of this process: what tells a live run from a dead one."""
    import psutil

    me = psutil.Process()
    return {HOST_TAG: socket.gethostname(), PID_TAG: str(me.pid), STARTED_TAG: f"{me.create_time():.2f}"}


def process_alive(pid: int, started: str | None) -> bool:
    """Whether the process that started a run still runs (the same pid with the same start time)."""
    import psutil

    try:
        process = psutil.Process(pid)
        if process.status() == psutil.STATUS_ZOMBIE:
            return False
        return started is None or abs(process.create_time() - float(started)) < 1.0
    except psutil.NoSuchProcess:
        return False
    except (psutil.Error, ValueError):
        return True  # cannot tell: leave the run alone


def end_dead_runs(client) -> list[str]:
    """Mark KILLED the runs this host's processes left RUNNING when they died; returns their ids."""
    host = socket.gethostname()
    experiments = [e.experiment_id for e in client.search_experiments()]
    if not experiments:
        return []
    query = f"attributes.status = 'RUNNING' and tags.`{HOST_TAG}` = '{host}'"
    ended = []
    for found in client.search_runs(experiments, filter_string=query, max_results=10_000):
        tags = found.data.tags
        pid = tags.get(PID_TAG, "")
        if not pid.isdigit() or process_alive(int(pid), tags.get(STARTED_TAG)):
            continue
        reason = f"process {pid} on {host} ended without closing the run (killed, or it crashed)"
        client.set_tag(found.info.run_id, END_REASON_TAG, reason)
        client.set_terminated(found.info.run_id, status="KILLED")
        log.warning("marked run %s (%s) KILLED: %s", found.info.run_id, found.info.run_name, reason)
        ended.append(found.info.run_id)
    return ended


def git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                             cwd=PACKAGE_DIR)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True,
                               text=True, timeout=5, cwd=PACKAGE_DIR).stdout.strip()
        return out.stdout.strip() + ("-dirty" if dirty else "") if out.returncode == 0 else "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


class Stopped(Exception):
    """Raised inside a run to end it KILLED rather than FAILED (a sweep trial that was pruned)."""


@contextmanager
def run(name: str, tags: dict[str, str] | None = None, nested: bool = False) -> Iterator[str]:
    """A run that ends FINISHED; KILLED on SIGINT, SIGTERM or SIGHUP; FAILED when the body raises;
    the reason is the tag `end_reason`. Yields the run id."""
    active = mlflow.start_run(run_name=name, nested=nested, tags={**process_tags(), **(tags or {})})
    try:
        yield active.info.run_id
    except BaseException as exc:
        status, reason = how_it_ended(exc)
        try:
            mlflow.set_tag(END_REASON_TAG, reason)
            mlflow.end_run(status)
        except Exception as store_error:  # the store may be what failed; the next command closes the run
            log.warning("could not mark run %s %s (%s: %s); the next command that opens the store will",
                        active.info.run_id, status, type(store_error).__name__, store_error)
        raise
    mlflow.end_run("FINISHED")


def how_it_ended(exc: BaseException) -> tuple[str, str]:
    """The status and `end_reason` of a run whose body raised exc."""
    if isinstance(exc, KeyboardInterrupt):
        return "KILLED", "SIGINT: interrupted"
    if isinstance(exc, Terminated):
        return "KILLED", f"{exc.name}: the process was asked to stop"
    if isinstance(exc, Stopped):
        return "KILLED", f"stopped: {exc}"[:500]
    first = str(exc).splitlines()[0] if str(exc) else ""
    return "FAILED", f"{type(exc).__name__}: {first}"[:500]


def open_run(experiment_id: str, name: str, tags: dict[str, str], run_id: str | None = None) -> str:
    """A run that stays RUNNING outside any `with` (the parent of runs made by other processes);
    given run_id, that run is reopened. Returns its id."""
    client = mlflow.MlflowClient()
    if run_id:
        try:
            client.update_run(run_id, status="RUNNING")
            return run_id
        except MlflowException:  # not in this store: start another
            pass
    return client.create_run(experiment_id, run_name=name, tags=tags).info.run_id


def log_to(run_id: str, params: dict[str, Any] | None = None, metrics: dict[str, float] | None = None,
           tags: dict[str, str] | None = None, texts: dict[str, str] | None = None) -> None:
    """Log into a run that is not the active one."""
    from mlflow.entities import Metric, Param, RunTag

    client = mlflow.MlflowClient()
    now = int(time.time() * 1000)
    client.log_batch(run_id, metrics=[Metric(k, float(v), now, 0) for k, v in (metrics or {}).items()],
                     params=[Param(k, str(v)[:6000]) for k, v in (params or {}).items()],
                     tags=[RunTag(k, str(v)) for k, v in (tags or {}).items()])
    for path, text in (texts or {}).items():
        client.log_text(run_id, text, path)


def close_run(run_id: str, status: str = "FINISHED") -> None:
    mlflow.MlflowClient().set_terminated(run_id, status)


def log_params(params: dict[str, Any]) -> None:
    mlflow.log_params({key: str(value)[:6000] for key, value in params.items()})


def log_metrics(metrics: dict[str, float], step: int | None = None) -> None:
    mlflow.log_metrics({key: float(value) for key, value in metrics.items()}, step=step)


def log_dataset(frame, name: str, source: str, context: str) -> str:
    """Log a pandas frame as an MLflow dataset input; returns its digest."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*can be interpreted in multiple ways.*")
        dataset = mlflow.data.from_pandas(frame, source=source, name=name, targets="label")
    mlflow.log_input(dataset, context=context)
    return dataset.digest


def log_text(text: str, path: str) -> None:
    mlflow.log_text(text, path)


def log_dict(obj: Any, path: str) -> None:
    mlflow.log_dict(obj, path)


def log_figure(figure, path: str) -> None:
    mlflow.log_figure(figure, path)


def set_tags(tags: dict[str, str]) -> None:
    mlflow.set_tags(tags)


def log_frame(frame, path: str) -> None:
    """A DataFrame as a CSV artifact."""
    with tempfile.TemporaryDirectory() as tmp:
        file = Path(tmp) / Path(path).name
        frame.to_csv(file, index=False)
        mlflow.log_artifact(str(file), str(Path(path).parent) if Path(path).parent != Path(".") else None)


def pip_requirements() -> list[str]:
    """What the logged model needs; explicit, since MLflow's inferred list wants torchvision."""
    from speechacts.classifier import package_versions

    versions = package_versions()
    names = {"mlflow": "mlflow", "scikit-learn": "scikit-learn", "skops": "skops", "numpy": "numpy",
             "torch": "torch", "transformers": "transformers", "onnxruntime": "onnxruntime", "tokenizers": "tokenizers"}
    reqs = [f"{pkg}=={versions[key]}" for key, pkg in names.items() if key in versions]
    return reqs + ["pysbd", "pydantic>=2", "pyyaml", "pandas", "safetensors"]


def log_model(model_dir: Path, input_example, output_example, registered_model: str | None) -> Any:
    """Log a saved classifier directory as a pyfunc model (code included), optionally registered. The
    signature has outputs only: serving.py says why, and checks the inputs itself. Its one parameter,
    `min_confidence`, marks labels below it as unsure."""
    from mlflow.models import ModelSignature, infer_signature
    from mlflow.types.schema import ParamSchema, ParamSpec

    signature = ModelSignature(inputs=None, outputs=infer_signature(output_example).inputs,
                               params=ParamSchema([ParamSpec("min_confidence", "double", 0.0)]))
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*type hints.*")
            return mlflow.pyfunc.log_model(
                name="model", python_model=str(SERVING_CODE), artifacts={MODEL_DIR_ARTIFACT: str(model_dir)},
                code_paths=[str(PACKAGE_DIR)], signature=signature, input_example=input_example,
                pip_requirements=pip_requirements(), registered_model_name=registered_model)
    except MlflowException as exc:
        raise TrackingError(f"could not log the model: {exc}") from None


def set_alias(registered_model: str, alias: str, version: str | int) -> None:
    mlflow.MlflowClient().set_registered_model_alias(registered_model, alias, str(version))


def use_store(uri: str | None) -> str:
    """Point MLflow at an existing store for reading (never creating one), close the runs of dead
    processes; returns the URI used."""
    uri = store.tracking_uri(uri)
    db = sqlite_file(uri)
    if db is not None:
        if not db.is_file():
            raise TrackingError(f"tracking store {uri} not found ({db.absolute()} does not exist); train "
                                "something first (`make run`) or pass --tracking-uri of an existing store")
        check_sqlite_file(db, uri)
        with closing(store.read_only(db)) as con:
            has_runs = con.execute("SELECT 1 FROM sqlite_master WHERE name = 'runs'").fetchone()
        if not has_runs:
            raise TrackingError(f"tracking store {uri} is not an MLflow store (it has no runs table); train "
                                "something first (`make run`) or pass --tracking-uri of an existing store")
    mlflow.set_tracking_uri(uri)
    try:
        end_dead_runs(mlflow.MlflowClient(uri))
    except MlflowException as exc:
        raise TrackingError(f"tracking store {uri}: {str(exc).splitlines()[0]}") from None
    return uri


def parent_runs(experiment: str, uri: str | None = None):
    """The finished top-level runs of an experiment, newest first, as a DataFrame."""
    uri = use_store(uri)
    try:
        found = mlflow.get_experiment_by_name(experiment)
        if found is None:
            names = [e.name for e in mlflow.search_experiments()]
            raise TrackingError(f"no experiment {experiment!r} in tracking store {uri}; it has: "
                                f"{', '.join(names) or 'none'}. Train something first (`make run`)")
        runs = mlflow.search_runs([found.experiment_id], filter_string="attributes.status = 'FINISHED'",
                                  order_by=["attributes.start_time DESC"])
    except MlflowException as exc:
        raise TrackingError(f"tracking store {uri}: {exc}") from None
    if "tags.mlflow.parentRunId" in runs.columns:
        runs = runs[runs["tags.mlflow.parentRunId"].isna()]
    if runs.empty:
        raise TrackingError(f"experiment {experiment!r} in {uri} has no finished training runs yet")
    return runs


def read_csv_artifact(run_id: str, path: str):
    import pandas as pd

    with tempfile.TemporaryDirectory() as tmp:
        local = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=path, dst_path=tmp)
        return pd.read_csv(local)
