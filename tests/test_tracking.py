"""The store and the runs: set-up under a lock, true end states, dead runs closed, unusable stores refused."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
from pathlib import Path

import mlflow
import pytest

from conftest import ROOT, SUBPROCESS_ENV, start_paused_training, tiny_overrides
from speechacts import tracking
from speechacts.cli import main

RECIPE = ROOT / "configs/baseline.yaml"
SPEECHACTS = Path(sys.executable).parent / "speechacts"
ENV = SUBPROCESS_ENV


def runs_of(store: str, experiment: str = "tests"):
    client = mlflow.MlflowClient(store)
    found = client.get_experiment_by_name(experiment)
    return [] if found is None else client.search_runs([found.experiment_id])


def _reaped_pid() -> int:
    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid


def test_runs_of_dead_processes_on_this_host_are_marked_killed_and_logged(tmp_path, caplog):
    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = mlflow.MlflowClient(store)
    experiment = client.create_experiment("tests")
    host = socket.gethostname()
    dead = client.create_run(experiment, run_name="dead", tags={tracking.HOST_TAG: host,
                                                               tracking.PID_TAG: str(_reaped_pid())})
    alive = client.create_run(experiment, run_name="alive", tags=tracking.process_tags())
    reused = client.create_run(experiment, run_name="pid reused", tags={**tracking.process_tags(),
                                                                       tracking.STARTED_TAG: "12.00"})
    elsewhere = client.create_run(experiment, run_name="elsewhere", tags={tracking.HOST_TAG: "another-host",
                                                                         tracking.PID_TAG: "1"})
    with caplog.at_level("WARNING", logger="speechacts.tracking"):
        tracking.use_store(store)
    status = {r.info.run_name: (r.info.status, r.data.tags.get(tracking.END_REASON_TAG)) for r in runs_of(store)}
    assert status["alive"] == ("RUNNING", None) and status["elsewhere"] == ("RUNNING", None)
    for name in ("dead", "pid reused"):
        assert status[name][0] == "KILLED"
        assert status[name][1].endswith(f"on {host} ended without closing the run (killed, or it crashed)")
    logged = [r.getMessage() for r in caplog.records if r.name == "speechacts.tracking"]
    assert len(logged) == 2 and all(m.startswith("marked run ") and " KILLED: process " in m for m in logged)
    assert {dead.info.run_id, reused.info.run_id} == {m.split()[2] for m in logged}
    assert alive and elsewhere


@pytest.mark.parametrize("make, message", [
    (None, "tracking store sqlite:///{db} not found ({db} does not exist)"),
    (b"this is not a database at all", "tracking store sqlite:///{db}: {db} is not an SQLite database (it starts "
                                       "with b'this is '); point --tracking-uri"),
])
def test_compare_refuses_a_missing_or_garbage_store_and_creates_nothing(tmp_path, capsys, make, message):
    db = tmp_path / "store.db"
    if make is not None:
        db.write_bytes(make)
    assert main(["compare", "tests", "--tracking-uri", f"sqlite:///{db}"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and message.format(db=db) in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ([] if make is None else ["store.db"])
    assert make is None or db.read_bytes() == make


def test_train_and_predict_refuse_a_garbage_store_in_one_line(project, capsys):
    db = project / "garbage.db"
    db.write_bytes(b"\x00\x01garbage" * 100)
    assert main(["train", str(RECIPE), *tiny_overrides(f"sqlite:///{db}")]) == 2
    assert main(["predict", "--tracking-uri", f"sqlite:///{db}", "Talks resume."]) == 2
    errors = capsys.readouterr().err.splitlines()
    assert len(errors) == 2 and all(f"{db} is not an SQLite database" in e for e in errors)
    assert all(e.startswith("error: tracking store ") for e in errors)


def test_a_failing_job_records_its_error_as_the_end_reason(project, store, monkeypatch):
    from speechacts import train
    from speechacts.config import load_config
    from speechacts.models.baseline import BaselineClassifier

    def broken_save(self, path):
        raise OSError("disk full")

    monkeypatch.setattr(BaselineClassifier, "_save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        train.run(load_config(RECIPE, tiny_overrides(store)))
    parents = [r for r in runs_of(store) if "mlflow.parentRunId" not in r.data.tags]
    assert [(r.info.status, r.data.tags[tracking.END_REASON_TAG]) for r in parents] == [("FAILED", "OSError: disk full")]
    children = [r for r in runs_of(store) if "mlflow.parentRunId" in r.data.tags]
    assert [r.info.status for r in children] == ["FINISHED", "FINISHED"], [r.info for r in children]
    assert not list(Path("outputs").glob("*/model")) and not list(Path("outputs").glob("*/.model.partial-*"))


# --- real processes, killed ---

def start_training(project: Path, store: str, point: str) -> subprocess.Popen:
    try:
        return start_paused_training(project, store, point)
    except RuntimeError as exc:
        pytest.fail(str(exc))


def parent_and_children(store: str):
    runs = runs_of(store)
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    assert len(parents) == 1
    return parents[0], [r for r in runs if r is not parents[0]]


@pytest.mark.slow
@pytest.mark.parametrize("point, signum, code", [("fold", signal.SIGTERM, 143), ("fold", signal.SIGINT, 130),
                                                 ("save", signal.SIGTERM, 143), ("save", signal.SIGHUP, 129)])
def test_a_signal_ends_the_runs_killed_with_the_signal_as_reason(project, store, point, signum, code):
    process = start_training(project, store, point)
    process.send_signal(signum)
    assert process.wait(timeout=60) == code
    parent, children = parent_and_children(store)
    name = signal.Signals(signum).name
    assert parent.info.status == "KILLED" and parent.data.tags[tracking.END_REASON_TAG].startswith(f"{name}: ")
    killed = [c for c in children if c.info.status == "KILLED"]
    assert len(killed) == (1 if point == "fold" else 0)  # the fold that was running
    assert all(c.data.tags[tracking.END_REASON_TAG].startswith(f"{name}: ") for c in killed)
    assert not list((project / "outputs").glob("*/*model*"))  # neither a model nor a partial one
    assert mlflow.MlflowClient(store).search_registered_models() == []


@pytest.mark.slow
@pytest.mark.parametrize("point", ["fold", "save"])
def test_after_sigkill_the_next_command_marks_the_runs_killed(project, store, point):
    process = start_training(project, store, point)
    process.kill()
    process.wait(timeout=60)
    parent, children = parent_and_children(store)
    assert parent.info.status == "RUNNING"
    out = subprocess.run([str(SPEECHACTS), "compare", "tests", "--tracking-uri", store], cwd=project, env=ENV,
                         capture_output=True, text=True, timeout=120)
    notes = [line for line in out.stderr.splitlines() if line.startswith("warning: marked run ")]
    assert len(notes) == (2 if point == "fold" else 1), out.stderr
    assert all(f"KILLED: process {process.pid} on {socket.gethostname()} ended without closing" in n for n in notes)
    parent, children = parent_and_children(store)
    assert parent.info.status == "KILLED" and "RUNNING" not in {c.info.status for c in children}
    assert parent.data.tags[tracking.END_REASON_TAG].startswith(f"process {process.pid} on ")
    outputs = [p.name for p in (project / "outputs").glob("*/*model*")]
    assert outputs == ([] if point == "fold" else [f".model.partial-{process.pid}"])  # never a model/ half written
    assert mlflow.MlflowClient(store).search_registered_models() == []


@pytest.mark.slow
def test_four_parallel_first_trains_on_a_new_store_all_succeed(project, store):
    command = [str(SPEECHACTS), "train", str(RECIPE), *tiny_overrides(store)]
    processes = [subprocess.Popen(command, cwd=project, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  text=True) for _ in range(4)]
    results = [(p.wait(timeout=600), p.stderr.read()) for p in processes]
    assert [code for code, _ in results] == [0, 0, 0, 0], "\n".join(err[-1500:] for _, err in results)
    parents = [r for r in runs_of(store) if "mlflow.parentRunId" not in r.data.tags]
    assert len(parents) == 4 and {r.info.status for r in parents} == {"FINISHED"}
    versions = mlflow.MlflowClient(store).search_model_versions("name = 'speechacts-classifier'")
    assert sorted(int(v.version) for v in versions) == [1, 2, 3, 4]


def test_a_bug_while_connecting_is_not_reported_as_an_unreachable_store(tmp_path, monkeypatch):
    """connect turns only the errors of a store (MLflow's, sqlalchemy's, requests', the file system's)
    into TrackingError; anything else is a bug and keeps its own type and traceback."""
    from speechacts.config import TrackingConfig

    def broken(client):
        raise TypeError("a bug")

    monkeypatch.setattr(tracking, "end_dead_runs", broken)
    with pytest.raises(TypeError, match="a bug"):
        tracking.connect(TrackingConfig(uri=f"sqlite:///{tmp_path / 'mlflow.db'}", experiment="tests"))
