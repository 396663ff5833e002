from collections import Counter
from pathlib import Path

import pytest

from conftest import ROOT, SEED_NAME, read_rows, write_rows
from speechacts.config import DataConfig
from speechacts.data import read_label_file, select, to_dataset, validate
from speechacts.errors import DataError
from speechacts.labels import LABELS

AUTHORED = Path("data/authored.csv")
SEED_LABELS = Path("data/seed_labels.csv")


def edit(path: Path, change) -> None:
    rows = read_rows(path)
    header = list(rows[0])
    change(rows)
    write_rows(path, rows, header)


def problems(cfg: DataConfig | None = None) -> str:
    with pytest.raises(DataError) as err:
        validate(cfg or DataConfig())
    return str(err.value)


def test_tiny_project_validates(project):
    corpus = validate(DataConfig())
    assert len(corpus.test) == 24 and len(corpus.excluded) == 5
    assert Counter(r.label for r in corpus.train) == {label: 6 for label in LABELS}


def test_unknown_label(project):
    edit(AUTHORED, lambda rows: rows[2].update(label="warning"))
    assert ("data/authored.csv line 4 (id authored-" in problems()
            and "unknown label 'warning'; expected one of threat, demand, denial, offer, assessment" in problems())


def test_missing_label(project):
    edit(AUTHORED, lambda rows: rows[0].update(label=""))
    assert "data/authored.csv line 2" in problems() and "missing label; expected one of" in problems()


def test_duplicate_id(project):
    edit(AUTHORED, lambda rows: rows[1].update(id=rows[0]["id"]))
    assert f"data/authored.csv line 3 (id {read_rows(AUTHORED)[0]['id']}): duplicate id, first used at " \
           "data/authored.csv line 2" in problems()


def test_duplicate_text(project):
    edit(AUTHORED, lambda rows: rows[3].update(text=rows[0]["text"].upper()))
    assert "data/authored.csv line 5" in problems() and "duplicate text, same as data/authored.csv line 2" in problems()


def test_empty_text(project):
    edit(AUTHORED, lambda rows: rows[4].update(text="   "))
    assert "data/authored.csv line 6" in problems() and "empty text" in problems()


def test_text_that_no_longer_matches_its_seed_article(project):
    # a real sentence of the article, but under the id of another one
    edit(SEED_LABELS, lambda rows: rows[0].update(text=rows[1]["text"]))
    message = problems()
    assert f"data/seed_labels.csv line 2 (id {SEED_NAME}:001): text no longer matches its seed article" in message
    assert "US and Russia still at odds" in message


def test_seed_sentence_with_no_row(project):
    edit(SEED_LABELS, lambda rows: rows.pop(5))
    assert f"{SEED_NAME}:008: seed sentence has no row in any label file" in problems()


def test_row_naming_a_seed_article_whose_text_is_not_in_it(project):
    edit(SEED_LABELS, lambda rows: rows[2].update(text="Talks lasted for three days in Vienna."))
    assert (f"id {SEED_NAME}:005): names seed article '{SEED_NAME}' as its source, but its text is not in it"
            in problems())


def test_edited_seed_article_breaks_its_rows(project):
    article = Path("seeds") / f"{SEED_NAME}.txt"
    article.write_text(article.read_text(encoding="utf-8").replace("seven hours", "eight hours"), encoding="utf-8")
    assert "names seed article" in problems() and "Talks lasted for more than seven hours" not in problems()


def test_unknown_source(project):
    edit(AUTHORED, lambda rows: rows[0].update(source="wikipedia"))
    assert "unknown source 'wikipedia'; expected 'authored' or a seed article" in problems()


def test_missing_column(project):
    rows = read_rows(AUTHORED)
    for row in rows:
        del row["label"]
    write_rows(AUTHORED, rows)
    assert ("data/authored.csv: missing column(s) label; the header must have id, source, label, text"
            in problems())


def test_unknown_column(project):
    rows = read_rows(AUTHORED)
    for row in rows:
        row["labl"] = "x"
    write_rows(AUTHORED, rows)
    assert "data/authored.csv: unknown column(s) labl" in problems()


def test_file_that_is_not_utf8(project):
    raw = AUTHORED.read_bytes().splitlines(keepends=True)
    raw[3] = raw[3].replace(b"a", b"\xe4", 1)
    AUTHORED.write_bytes(b"".join(raw))
    assert "data/authored.csv line 4: not UTF-8 (byte 0xe4); save the file as UTF-8" in problems()


def test_missing_data_file(project):
    assert "data/nope.csv: data file not found" in problems(DataConfig(train=[Path("data/nope.csv")]))


def test_bad_hard_flag(project):
    edit(AUTHORED, lambda rows: rows[0].update(hard="maybe"))
    assert "hard must be true or false, got 'maybe'" in problems()


def test_left_out_line_must_be_recorded(project):
    edit(Path("data/seed_excluded.csv"), lambda rows: rows.pop(0))
    assert f"{SEED_NAME}:003: left-out line (photo title) has no row in any label file" in problems()


def test_sentence_reusing_seed_wording_is_refused(project):
    edit(AUTHORED, lambda rows: rows[0].update(text="Officials warned of significant costs and consequences for Minsk."))
    assert "reuses wording of seed article" in problems() and "'costs and consequences for'" not in problems()


def test_near_duplicates_are_flagged(project):
    def near_copy(rows):
        rows[1]["text"] = rows[0]["text"].replace(".", "") + " on Friday."
    edit(AUTHORED, near_copy)
    assert "near-duplicate of data/authored.csv line 2" in problems()


def test_no_rows_left_after_filtering(project):
    corpus = validate(DataConfig())
    with pytest.raises(DataError, match=r"no training rows left after filtering \(data.topics=\['nothing'\]"):
        select(corpus.train, DataConfig(topics=["nothing"]))


def test_dataset_has_fixed_label_order_and_keeps_id_and_source(project):
    corpus = validate(DataConfig())
    dataset = to_dataset(corpus.train)
    assert dataset.features["label"].names == list(LABELS)
    assert {"id", "source", "topic", "hard", "text", "label"} <= set(dataset.column_names)
    assert dataset[0]["id"] == corpus.train[0].id
    assert dataset.features["label"].int2str(dataset[0]["label"]) == corpus.train[0].label


# The shipped corpus itself (issue: at least 120 per label, breadth, hard cases, apart from the seed).
def test_shipped_corpus_validates_and_is_large_enough():
    corpus = validate(DataConfig(train=[ROOT / "data/authored.csv"], test=[ROOT / "data/seed_labels.csv"],
                                 seeds_dir=ROOT / "seeds", excluded=ROOT / "data/seed_excluded.csv"))
    counts = Counter(r.label for r in corpus.train)
    assert all(counts[label] >= 120 for label in LABELS), counts
    assert len({r.topic for r in corpus.train}) >= 15
    for label in LABELS:
        rows = [r for r in corpus.train if r.label == label]
        assert sum(r.hard for r in rows) * 3 >= len(rows), label
    assert all(6 <= len(r.text.split()) <= 50 for r in corpus.train)


def test_authored_rows_read_with_their_flags():
    rows, problems_found = read_label_file(ROOT / "data/authored.csv")
    assert not problems_found
    assert {r.source for r in rows} == {"authored"}
    assert any(r.hard for r in rows) and any(not r.hard for r in rows)
