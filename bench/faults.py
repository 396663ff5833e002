"""Fault injection: items 1 to 4 of issue 11, reproduced against a real store and a real server.

Usage: python bench/faults.py            (about 3 minutes on 2 cores)

In a temporary project with the tiny test corpus (tests/conftest.py), it
1. crafts a model whose pipeline would run code at predict time and tries `speechacts predict`
   and `mlflow models serve` on it;
2. starts 4, then 2, `speechacts train` processes together against a new SQLite store;
3. kills training processes with SIGTERM, SIGINT and SIGKILL during cross-validation and during
   the final save, then runs the next command (`speechacts compare`);
4. sends non-text and empty inputs to `mlflow models serve` of the registered model.
Each check records what was expected and what happened. Results: bench/results/faults.json and
bench/results/faults.md (generated). Exit status 1 if any check fails.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
sys.path.insert(0, str(ROOT / "tests"))
import conftest  # noqa: E402  (the tiny corpus, the crafted model, paused training, the server)

SPEECHACTS = str(Path(sys.executable).parent / "speechacts")
checks: list[dict] = []


def check(item: int, what: str, expected: str, observed: str, ok: bool) -> None:
    checks.append({"item": item, "check": what, "expected": expected, "observed": observed, "ok": bool(ok)})
    print(f"[{'ok' if ok else 'FAIL'}] {item}. {what}: {observed}", flush=True)


def cli(folder: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([SPEECHACTS, *args], cwd=folder, env=conftest.SUBPROCESS_ENV, capture_output=True,
                          text=True, timeout=timeout)


def runs(store: str) -> list:
    import mlflow

    client = mlflow.MlflowClient(store)
    experiment = client.get_experiment_by_name("tests")
    return [] if experiment is None else client.search_runs([experiment.experiment_id])


PLAIN_ARRAYS = ("baseline.safetensors", "baseline.json")
REFUSAL = "a baseline saved as a scikit-learn pipeline"


def post(url: str, body: dict) -> tuple[int, dict]:
    request = urllib.request.Request(url, json.dumps(body).encode(), {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def model_code(tmp: Path, registered) -> None:
    """Item 1: a model file that would run code. The baseline is plain arrays (baseline.safetensors and
    baseline.json), which cannot; a directory holding a crafted scikit-learn pipeline (pipeline.skops, what
    baselines were before) in their place is refused before anything of it is read."""
    marker = tmp / "MARKER"
    evil = conftest.crafted_model(registered.model_dir, tmp / "evil-model", marker)
    for name in PLAIN_ARRAYS:
        (evil / name).unlink()
    out = cli(tmp, "predict", "--model", str(evil), "Talks resume.")
    first = (out.stderr.strip().splitlines() or [""])[0]
    check(1, "speechacts predict --model <crafted dir>", "exit 2, one error line saying to retrain, no code run",
          f"exit {out.returncode}; {first[:160]}...; marker written: {marker.exists()}",
          out.returncode == 2 and REFUSAL in first and len(out.stderr.splitlines()) == 1 and not marker.exists())
    artifacts = next((tmp / "registered" / "mlruns").rglob(PLAIN_ARRAYS[0])).parent  # the registered model's copy
    saved = {name: (artifacts / name).read_bytes() for name in PLAIN_ARRAYS}
    for name in PLAIN_ARRAYS:
        (artifacts / name).unlink()
    shutil.copy(evil / "pipeline.skops", artifacts)
    try:
        with conftest.model_server("models:/speechacts-classifier@champion", registered.store, tmp / "evil.log",
                                   start_timeout=90):
            started = True
    except RuntimeError:
        started = False
    log = (tmp / "evil.log").read_text()
    check(1, "mlflow models serve of a registered model whose files were replaced", "the server refuses to start; "
          "no code run", f"started: {started}; refusal in its log: {REFUSAL in log}; marker "
          f"written: {marker.exists()}", not started and REFUSAL in log and not marker.exists())
    (artifacts / "pipeline.skops").unlink()
    for name, data in saved.items():
        (artifacts / name).write_bytes(data)


def parallel_first_use(tmp: Path) -> None:
    """Item 2: N trainings against a store that does not exist yet."""
    for n in (4, 2):
        folder = conftest.make_project(tmp / f"parallel-{n}")
        store = f"sqlite:///{folder / 'mlflow.db'}"
        command = [SPEECHACTS, "train", str(conftest.ROOT / "configs/baseline.yaml"), *conftest.tiny_overrides(store)]
        processes = [subprocess.Popen(command, cwd=folder, env=conftest.SUBPROCESS_ENV, stdout=subprocess.DEVNULL,
                                      stderr=subprocess.PIPE, text=True) for _ in range(n)]
        codes = [p.wait(timeout=900) for p in processes]
        finished = [r for r in runs(store) if "mlflow.parentRunId" not in r.data.tags
                    and r.info.status == "FINISHED"]
        again = subprocess.run(command, cwd=folder, env=conftest.SUBPROCESS_ENV, capture_output=True, timeout=600)
        check(2, f"{n} parallel first `speechacts train` on a new store", f"all exit 0, {n} FINISHED runs, the "
              "store still usable", f"exit codes {codes}; {len(finished)} FINISHED; next train exit {again.returncode}",
              codes == [0] * n and len(finished) == n and again.returncode == 0)


def kills(tmp: Path) -> None:
    """Item 3: training processes killed at several points."""
    cases = [("fold", signal.SIGTERM), ("fold", signal.SIGINT), ("save", signal.SIGTERM), ("fold", signal.SIGKILL),
             ("save", signal.SIGKILL)]
    for point, signum in cases:
        name = signal.Signals(signum).name
        folder = conftest.make_project(tmp / f"kill-{point}-{name}")
        store = f"sqlite:///{folder / 'mlflow.db'}"
        process = conftest.start_paused_training(folder, store, point)
        process.send_signal(signum)
        code = process.wait(timeout=120)
        before = sorted({r.info.status for r in runs(store)})
        after_cmd = cli(folder, "compare", "tests", "--tracking-uri", store)
        notes = [line for line in after_cmd.stderr.splitlines() if line.startswith("warning: marked run")]
        parents = [r for r in runs(store) if "mlflow.parentRunId" not in r.data.tags]
        statuses = sorted({r.info.status for r in runs(store)})
        reason = parents[0].data.tags.get("end_reason", "") if parents else ""
        models = sorted(p.name for p in (folder / "outputs").glob("*/*model*"))
        import mlflow

        registered = mlflow.MlflowClient(store).search_registered_models()
        dead = signum == signal.SIGKILL
        expected_reason = "process " if dead else f"{name}: "
        check(3, f"{name} during {'cross-validation' if point == 'fold' else 'the final save'}",
              "no run left RUNNING after the next command, parent KILLED with the reason, no model/ folder, "
              "nothing registered",
              f"exit {code}; statuses right after: {before}, after `compare`: {statuses}; end_reason "
              f"{reason[:60]!r}; notes from `compare`: {len(notes)}; in outputs/<run>/: {models or 'nothing'}; "
              f"registered models: {len(registered)}",
              "RUNNING" not in statuses and parents and parents[0].info.status == "KILLED"
              and reason.startswith(expected_reason) and "model" not in models and not registered
              and (bool(notes) == dead))


def server_inputs(tmp: Path, registered) -> None:
    """Item 4: what the server answers to inputs that are not non-empty strings."""
    bodies = [{"inputs": [None]}, {"inputs": [1]}, {"inputs": [True]}, {"inputs": []}, {"inputs": [""]},
              {"inputs": ["Talks resume.", None]}, {"dataframe_split": {"columns": ["text"], "data": [[None]]}},
              {"dataframe_split": {"columns": ["text"], "data": [["Talks resume."], [7]]}},
              {"dataframe_records": [{"text": False}]}, {"inputs": [["nested"]]}]
    with conftest.model_server("models:/speechacts-classifier@champion", registered.store, tmp / "server.log") as url:
        for body in bodies:
            status, answer = post(url + "/invocations", body)
            message = answer.get("message", "") if isinstance(answer, dict) else ""
            check(4, f"POST {json.dumps(body)}", "400, a short message, no stack trace",
                  f"{status}; stack_trace: {'stack_trace' in answer}; {len(message)} chars: "
                  f"{message.split('Error: ')[-1][:80]!r}",
                  status == 400 and "stack_trace" not in answer and len(message) < 400)
        status, answer = post(url + "/invocations", {"inputs": ["Talks resume.", 7]})
        check(4, 'POST {"inputs": ["Talks resume.", 7]} (known limitation)', "200: MLflow's JSON parsing turns a list "
              "mixing strings and numbers into strings before the model sees it",
              f"{status}; labels {[p.get('label') for p in answer.get('predictions', [])]}", status == 200)
        request = urllib.request.Request(url + "/invocations", b'text\n"unclosed', {"Content-Type": "text/csv"})
        try:
            urllib.request.urlopen(request, timeout=30)
            status, answer = 200, {}
        except urllib.error.HTTPError as exc:
            status, answer = exc.code, json.loads(exc.read())
        check(4, "POST a CSV body pandas cannot parse (known limitation)", "MLflow's own parser answers 400 with a "
              "stack_trace, before the model is called", f"{status}; stack_trace: {'stack_trace' in answer}",
              status == 400)
        status, answer = post(url + "/invocations", {"inputs": ["Talks will resume in March."]})
        check(4, "POST a sentence", "200 and a label", f"{status}; {answer.get('predictions', [{}])[0].get('label')}",
              status == 200)


def main() -> int:
    import warnings

    warnings.simplefilter("ignore")
    started = datetime.now(UTC)
    with tempfile.TemporaryDirectory() as scratch:
        tmp = Path(scratch)
        (tmp / "registered").mkdir()
        os.chdir(tmp)
        registered = conftest.train_and_register(tmp / "registered")
        model_code(tmp, registered)
        parallel_first_use(tmp)
        kills(tmp)
        server_inputs(tmp, registered)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT).stdout
    record = {"date": started.isoformat(timespec="seconds"), "seconds": round((datetime.now(UTC) - started)
                                                                              .total_seconds(), 1),
              "commit": commit.strip(), "machine": {"python": platform.python_version(), "cores": os.cpu_count()},
              "command": "python bench/faults.py", "checks": checks}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "faults.json").write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    lines = [f"# Fault injection ({record['date']}, commit {record['commit']}, `{record['command']}`, "
             f"{record['seconds']} s)", "", "| item | check | expected | observed | ok |", "|---|---|---|---|---|"]
    lines += [f"| {c['item']} | {c['check']} | {c['expected']} | {c['observed'].replace('|', '/')} | "
              f"{'yes' if c['ok'] else '**no**'} |" for c in checks]
    (RESULTS / "faults.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    failed = [c for c in checks if not c["ok"]]
    print(f"{len(checks) - len(failed)}/{len(checks)} checks as expected; wrote {RESULTS}/faults.json and faults.md")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
