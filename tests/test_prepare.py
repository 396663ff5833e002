import json
from pathlib import Path

from conftest import SEED_NAME, read_rows, write_rows
from speechacts.cli import main


def test_prepare_prints_and_writes_the_data_card(project, capsys):
    assert main(["prepare"]) == 0
    out = capsys.readouterr().out
    assert "# Data card" in out and "## Labels by kind of text" in out and "## Isolated sentences by hard flag" in out
    assert "67 training sentences (35 isolated, 32 in 4 authored articles)" in out
    assert "4 articles on 4 disputes; 32 labelled sentences, 7 to 9 per article (median 8)." in out
    assert "## Shortcut check" in out and "| article | " in out
    assert f"| {SEED_NAME}:013 | section heading | US warning over invasion |" in out
    card = Path("data/prepared/DATA_CARD.md").read_text(encoding="utf-8")
    assert card in out
    sentences = [json.loads(line) for line in Path("data/prepared/sentences.jsonl").read_text().splitlines()]
    assert len(sentences) == 29 and sentences[2]["reason"] == "photo title"


def test_prepare_refuses_bad_data_and_writes_nothing(project, capsys):
    rows = read_rows(Path("data/authored.csv"))
    rows[0]["label"] = "bluff"
    write_rows(Path("data/authored.csv"), rows)
    assert main(["prepare"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: validation failed with 1 problem(s)") and "unknown label 'bluff'" in err
    assert not Path("data/prepared").exists()


def test_validate_command(project, capsys):
    assert main(["validate"]) == 0
    assert "ok: 67 training rows, 24 test rows, 5 left-out lines" in capsys.readouterr().out


def test_add_missing_rows_for_a_new_article(project, capsys):
    Path("seeds/2023-05-02-wire-fisheries.txt").write_text(
        "Fishing talks stall\nNegotiators failed to agree quotas on Tuesday.\nSource: agencies\n", encoding="utf-8")
    assert main(["prepare"]) == 2
    assert "2023-05-02-wire-fisheries:001: seed sentence has no row" in capsys.readouterr().err
    assert main(["prepare", "--add-missing"]) == 0
    assert "added 3 row(s)" in capsys.readouterr().out
    assert main(["prepare"]) == 2  # the new rows have blank labels until someone labels them
    assert "missing label" in capsys.readouterr().err
    rows = read_rows(Path("data/seed_labels.csv"))
    for row in rows:
        row["label"] = row["label"] or "assessment"
    write_rows(Path("data/seed_labels.csv"), rows)
    assert main(["prepare"]) == 0
