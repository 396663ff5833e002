"""`mlflow models serve` on the registered champion answers /invocations with labels and probabilities."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from conftest import SENTENCES, train_and_register
from speechacts import load_classifier
from speechacts.labels import LABELS

pytestmark = pytest.mark.slow
BIN = Path(sys.executable).parent
START_TIMEOUT_S = 120


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def post(url: str, body: dict) -> tuple[int, dict]:
    request = urllib.request.Request(url, json.dumps(body).encode(), {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def wait_until_up(url: str, server: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if server.poll() is not None:
            pytest.fail(f"the server exited with {server.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url + "/ping", timeout=2):
                return
        except OSError:
            time.sleep(0.5)
    pytest.fail(f"the server did not answer /ping within {START_TIMEOUT_S} s:\n{log.read_text()[-3000:]}")


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """The champion of a fresh store behind `mlflow models serve` on a free loopback port; always stopped."""
    registered = train_and_register(tmp_path_factory.mktemp("served"))
    port, log = free_port(), registered.model_dir.parent / "server.log"
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
           "MLFLOW_TRACKING_URI": registered.store, "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false"}
    command = [str(BIN / "mlflow"), "models", "serve", "-m", "models:/speechacts-classifier@champion",
               "--env-manager", "local", "--host", "127.0.0.1", "--port", str(port)]
    with open(log, "w") as out:
        server = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_until_up(url, server, log)
        yield url, registered
    finally:
        os.killpg(server.pid, signal.SIGTERM)  # the server and the uvicorn worker it started
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait(timeout=15)


def test_invocations_answer_labels_and_probabilities_like_the_python_api(served):
    url, registered = served
    status, body = post(url + "/invocations", {"dataframe_split": {"columns": ["text"],
                                                                   "data": [[s] for s in SENTENCES]}})
    assert status == 200
    expected = load_classifier(registered.model_dir).predict(SENTENCES)
    rows = body["predictions"]
    assert [set(row) for row in rows] == [{"label", *LABELS}] * len(SENTENCES)
    assert [row["label"] for row in rows] == [p.label for p in expected]
    for row, p in zip(rows, expected):
        assert [row[label] for label in LABELS] == pytest.approx([p.scores[label] for label in LABELS], abs=1e-9)


def test_invocations_take_a_plain_list_of_sentences(served):
    url, _ = served
    status, body = post(url + "/invocations", {"inputs": SENTENCES[:2]})
    assert status == 200 and len(body["predictions"]) == 2


def test_an_empty_sentence_is_a_bad_request_with_a_message(served):
    url, _ = served
    status, body = post(url + "/invocations", {"inputs": ["Talks resume.", " "]})
    assert status == 400 and "empty" in json.dumps(body)
