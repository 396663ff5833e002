"""The second reading: agreement, kappa, and final labels that follow the settled ones."""

import pytest

from conftest import write_rows
from speechacts import agreement
from speechacts.cli import main
from speechacts.errors import DataError


def readings(tmp_path, rows):
    folder = tmp_path / "second_reading"
    write_rows(folder / "a.csv", rows, ["id", "first", "second", "settled", "note"])
    return agreement.read_readings(folder)


ROWS = [{"id": "a:001", "first": "threat", "second": "threat", "settled": "", "note": ""},
        {"id": "a:002", "first": "assessment", "second": "denial", "settled": "denial", "note": "rule 7"},
        {"id": "a:003", "first": "assessment", "second": "assessment", "settled": "", "note": ""},
        {"id": "a:004", "first": "offer", "second": "offer", "settled": "", "note": ""}]


def test_kappa_and_agreement_are_reported(tmp_path):
    text = agreement.summary(readings(tmp_path, ROWS), {"a": "w1"})
    # observed 3/4; chance (1*1 + 2*1 + 1*1 + 0*1 ...) / 16 = (1 + 2 + 1) / 16 over threat, assessment, offer
    assert "4 sentences of 1 files read twice, blind: agreement 0.750, Cohen's kappa 0.667." in text
    assert "| w1 | 4 | 0.750 | 0.667 |" in text
    assert "- assessment / denial -> denial: 1" in text


def test_a_disagreement_must_be_settled(tmp_path):
    rows = [dict(r) for r in ROWS]
    rows[1]["settled"] = ""
    with pytest.raises(DataError, match=r"a.csv line 3: the readers disagree \(assessment / denial\) and "
                                        r"`settled` is empty"):
        readings(tmp_path, rows)


def test_final_labels_must_follow_the_settled_ones(tmp_path):
    found = readings(tmp_path, ROWS)
    final = {"a:001": "threat", "a:002": "assessment", "a:003": "assessment", "a:004": "offer", "a:005": "offer"}
    assert agreement.final_label_problems(found, final) == [
        "a:002: settled as denial in the second reading, labelled assessment in its sheet",
        "a:005: in an article that was read twice, but not read"]


def test_agreement_command_on_the_tiny_project(project, capsys):
    rows = []
    from conftest import read_rows
    for row in read_rows(project / "data/articles/fx-border-post.csv"):
        rows.append({"id": row["id"], "first": row["label"], "second": row["label"], "settled": "", "note": ""})
    write_rows(project / "data/second_reading/fx-border-post.csv", rows)
    assert main(["agreement"]) == 0
    assert "8 sentences of 1 files read twice, blind: agreement 1.000" in capsys.readouterr().out
    assert main(["prepare"]) == 0
    assert "## Second reading" in capsys.readouterr().out
