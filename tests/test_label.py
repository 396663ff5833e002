"""The label job on Spark local[2]: the same labels and scores as in-process predict_article, and clear
refusals of inputs it cannot label. One Spark session serves the whole module."""

from __future__ import annotations

import json
import re
import sys

import numpy as np
import pandas as pd
import pytest

from conftest import FIXTURES, SEED_ARTICLE, train_and_register
from speechacts import cli, label
from speechacts.api import load_classifier
from speechacts.errors import DataError
from speechacts.labels import LABELS

ARTICLES = sorted((FIXTURES / "articles").glob("*.txt")) + [SEED_ARTICLE]


@pytest.fixture(scope="module")
def registered(tmp_path_factory):
    return train_and_register(tmp_path_factory.mktemp("registered"))


@pytest.fixture(scope="module")
def spark():
    pytest.importorskip("pyspark")
    session, started = label.session("local[2]")
    yield session
    if started:
        session.stop()


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """The fixture articles and the seed article, with a date and a source, and one article with no text."""
    records = [{"id": path.stem, "text": path.read_text(encoding="utf-8"), "date": f"2022-01-{i + 10:02d}",
                "source": "fixture"} for i, path in enumerate(ARTICLES)]
    records.append({"id": "blank", "text": " \n ", "date": "2022-02-01", "source": "fixture"})
    folder = tmp_path_factory.mktemp("corpus")
    write_jsonl(folder / "articles.jsonl", records)
    pd.DataFrame(records).to_parquet(folder / "articles.parquet")
    return folder


def write_jsonl(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


@pytest.mark.slow
def test_spark_labels_and_scores_equal_in_process_predict_article(registered, spark, corpus, tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", registered.store)
    result = label.run(corpus / "articles.jsonl", tmp_path / "out")
    out = pd.read_parquet(tmp_path / "out")
    classifier = load_classifier(registered.model_dir)
    expected = 0
    for path in ARTICLES:
        got = out[out["article_id"] == path.stem].sort_values("position")
        want = classifier.predict_article(path.read_text(encoding="utf-8"), path.stem)
        expected += len(want)
        assert list(got["position"]) == [p.position for p in want]
        assert list(got["kind"]) == [p.kind for p in want]
        assert list(got["text"]) == [p.text for p in want]
        assert list(got["label"]) == [p.label for p in want]
        scores = got[[f"score_{label_}" for label_ in LABELS]].to_numpy()
        np.testing.assert_allclose(scores, [[p.scores[label_] for label_ in LABELS] for p in want], rtol=0, atol=1e-9)
    assert len(out) == result.sentences == expected and result.articles == len(ARTICLES) + 1 and result.skipped == 1
    assert set(out["model_uri"]) == {"models:/speechacts-classifier@champion"} and set(out["model_version"]) == {"1"}
    assert set(out["source"]) == {"fixture"} and out.groupby("article_id")["date"].nunique().eq(1).all()
    assert "blank" not in set(out["article_id"])


@pytest.mark.slow
def test_cli_labels_parquet_like_jsonl_with_a_model_directory(registered, spark, corpus, tmp_path, capsys):
    assert cli.main(["label", "--input", str(corpus / "articles.jsonl"), "--output", str(tmp_path / "a"),
                     "--model", str(registered.model_dir)]) == 0
    assert cli.main(["label", "-i", str(corpus / "articles.parquet"), "-o", str(tmp_path / "b"),
                     "-m", str(registered.model_dir), "--conf", "spark.sql.shuffle.partitions=2"]) == 0
    printed = capsys.readouterr().out
    assert "labelled 56 sentences of 6 articles (1 with empty text skipped)" in printed
    key = ["article_id", "position"]
    a, b = (pd.read_parquet(tmp_path / name).sort_values(key).reset_index(drop=True) for name in "ab")
    pd.testing.assert_frame_equal(a, b)
    assert set(a["model_uri"]) == {str(registered.model_dir.resolve())} and a["model_version"].isna().all()
    # an existing output is replaced only when asked
    assert cli.main(["label", "-i", str(corpus / "articles.jsonl"), "-o", str(tmp_path / "a"), "-m",
                     str(registered.model_dir)]) == 2
    assert "already exists; choose another --output or pass --overwrite" in capsys.readouterr().err
    assert cli.main(["label", "-i", str(corpus / "articles.jsonl"), "-o", str(tmp_path / "a"), "-m",
                     str(registered.model_dir), "--overwrite"]) == 0


@pytest.mark.slow
@pytest.mark.parametrize("lines, message", [
    (['{"id": "a", "body": "Talks resumed."}'], r"no column text \(it has: body, id\); every article needs an id and its text"),
    (['{"text": "Talks resumed."}'], r"no column id \(it has: text\)"),
    (['{"name": "a"}'], r"no column id or text \(it has: name\)"),
    (['{"id": "a", "text": "Talks resumed."}', "not json"], r"1 line\(s\) are not JSON objects"),
    (['{"id": "a", "text": "Talks resumed."}', '{"id": "a", "text": "Talks failed."}'],
     r"1 article\(s\) repeat an id, e.g. 'a' \(2 times\); ids must be unique"),
    (['{"id": "a", "text": "Talks resumed."}', '{"text": "Talks failed.", "id": null}'], r"1 article\(s\) have no id"),
    (['{"id": "a", "text": 3}'], r"column text holds bigint, not strings"),
    (['{"id": [1], "text": "Talks resumed."}'], r"column id holds array<bigint>; give each article a string or integer id"),
])
def test_a_corpus_it_cannot_label_is_refused_in_one_line(registered, spark, tmp_path, capsys, lines, message):
    path = tmp_path / "articles.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    assert cli.main(["label", "-i", str(path), "-o", str(tmp_path / "out"), "-m", str(registered.model_dir)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: {path}: ") and "\n" not in err
    assert re.search(message, err)
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_an_empty_corpus_is_refused(registered, spark, tmp_path):
    pd.DataFrame({"id": pd.Series([], dtype=str), "text": pd.Series([], dtype=str)}).to_parquet(tmp_path / "a.parquet")
    with pytest.raises(DataError, match=r"a.parquet: no articles"):
        label.run(tmp_path / "a.parquet", tmp_path / "out", str(registered.model_dir))


@pytest.mark.parametrize("name, message", [
    ("missing.jsonl", r"missing.jsonl: input not found; give Parquet \(.parquet, or a folder of them\) or JSON lines"),
    ("articles.csv", r"articles.csv: unknown format '.csv'; expected Parquet"),
    ("folder", r"folder: a folder with no .parquet or .jsonl files; expected Parquet"),
])
def test_a_missing_or_unknown_input_is_refused_before_spark_starts(tmp_path, capsys, name, message):
    (tmp_path / "articles.csv").write_text("id,text\na,Talks resumed.\n", encoding="utf-8")
    (tmp_path / "folder").mkdir()
    (tmp_path / "folder" / "notes.txt").write_text("x", encoding="utf-8")
    assert cli.main(["label", "-i", str(tmp_path / name), "-o", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1
    assert re.search(message, err)


def test_input_format_is_read_from_the_names(tmp_path):
    (tmp_path / "spark-out").mkdir()
    (tmp_path / "spark-out" / "_SUCCESS").write_text("")
    (tmp_path / "spark-out" / "part-0.snappy.parquet").write_bytes(b"")
    (tmp_path / "a.jsonl.gz").write_bytes(b"")
    assert label.input_format(str(tmp_path / "spark-out")) == "parquet"
    assert label.input_format(str(tmp_path / "a.jsonl.gz")) == "json"
    assert label.input_format("s3a://bucket/archive/2022.parquet") == "parquet"  # URIs: Spark reads them
    assert label.input_format("hdfs://nn/archive/", "jsonl") == "json"
    with pytest.raises(DataError, match=r"hdfs://nn/archive/: unknown format 'with no suffix'; expected Parquet .*"
                                        r"or pass --format parquet\|jsonl"):
        label.input_format("hdfs://nn/archive/")


def test_a_bad_spark_setting_and_an_existing_output_are_refused(tmp_path, capsys):
    write_jsonl(tmp_path / "a.jsonl", [{"id": "a", "text": "Talks resumed."}])
    assert cli.main(["label", "-i", str(tmp_path / "a.jsonl"), "-o", str(tmp_path / "o"), "--conf", "spark"]) == 2
    assert "error: --conf 'spark': expected KEY=VALUE, e.g. --conf spark.executor.memory=4g" in capsys.readouterr().err
    (tmp_path / "o").mkdir()
    assert cli.main(["label", "-i", str(tmp_path / "a.jsonl"), "-o", str(tmp_path / "o"), "--conf", "a=b"]) == 2
    assert f"error: {tmp_path / 'o'} already exists; choose another --output or pass --overwrite" in capsys.readouterr().err


def test_missing_pyspark_or_java_is_said_in_one_line(monkeypatch):
    from speechacts.errors import EngineError

    monkeypatch.setitem(sys.modules, "pyspark.sql", None)  # import fails as if pyspark were not installed
    with pytest.raises(EngineError, match=r"pyspark is not installed; install the spark extra: pip install -e '.\[spark\]'"):
        label.session("local[2]")
    monkeypatch.undo()
    pytest.importorskip("pyspark")
    from pyspark.sql import SparkSession

    monkeypatch.setattr(SparkSession, "getActiveSession", classmethod(lambda cls: None))
    monkeypatch.setattr(label.shutil, "which", lambda name: None)
    monkeypatch.delenv("JAVA_HOME", raising=False)
    with pytest.raises(EngineError, match="Java not found: Spark needs Java 17 or newer on PATH or in JAVA_HOME"):
        label.session("local[2]")
