import re
from collections import Counter
from pathlib import Path

import pytest

from conftest import ROOT, SEED_NAME, read_rows, write_rows
from speechacts.config import DataConfig
from speechacts.data import read_label_file, select, validate
from speechacts.errors import DataError
from speechacts.labels import LABELS

AUTHORED = Path("data/authored.csv")
SEED_LABELS = Path("data/seed_labels.csv")
HARD_IN_TINY_PROJECT = 18  # rows flagged hard in the `project` fixture: 13 authored, 5 contrast


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
    assert Counter(r.label for r in corpus.train if not r.in_article) == {label: 7 for label in LABELS}
    article_rows = [r for r in corpus.train if r.in_article]
    assert len(article_rows) == 32 and len(corpus.articles) == 4
    assert Counter(r.kind for r in article_rows) == {"headline": 4, "standfirst": 4, "body": 24}
    assert {r.group for r in article_rows} == set(corpus.articles)
    assert corpus.articles["fx-border-post"].meta["outlet"] == "broadsheet"


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
    # exactly the one row whose sentence changed is named, by file, line and id
    assert problems() == (f"validation failed with 1 problem(s):\n  data/seed_labels.csv line 8 (id {SEED_NAME}:009): "
                          f"names seed article '{SEED_NAME}' as its source, but its text is not in it")


def test_unknown_source(project):
    edit(AUTHORED, lambda rows: rows[0].update(source="wikipedia"))
    assert "unknown source 'wikipedia'; expected 'authored' or the name of a seed or authored article" in problems()


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
    assert "data/authored.csv line 4: not UTF-8 (byte 0xe4 at offset " in problems()


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


# The shipped corpus itself: isolated sentences, contrast sentences and authored articles.
def shipped_corpus():
    return validate(DataConfig(train=[ROOT / "data/authored.csv", ROOT / "data/contrast.csv"],
                               test=[ROOT / "data/seed_labels.csv"], seeds_dir=ROOT / "seeds",
                               excluded=ROOT / "data/seed_excluded.csv", articles_dir=ROOT / "data/articles",
                               sources_dir=ROOT / "data/sources", second_reading_dir=ROOT / "data/second_reading"))


def test_shipped_isolated_sentences_validate_and_are_large_enough():
    corpus = shipped_corpus()
    authored = [r for r in corpus.train if r.id.startswith("authored-")]
    counts = Counter(r.label for r in authored)
    assert all(counts[label] >= 120 for label in LABELS), counts
    assert len({r.topic for r in authored}) >= 15
    for label in LABELS:
        rows = [r for r in authored if r.label == label]
        assert sum(r.hard for r in rows) * 3 >= len(rows), label
    assert all(6 <= len(r.text.split()) <= 50 for r in authored)


def test_shipped_contrast_sentences_break_each_shortcut_30_times():
    contrast = [r for r in shipped_corpus().train if r.id.startswith("contrast-")]
    assert all(r.hard and r.source == "authored" for r in contrast)

    def has(pattern):
        return [r for r in contrast if re.search(pattern, r.text, re.I)]

    assert len([r for r in has(r"\b(if|unless|provided that|as long as)\b") if r.label != "threat"]) >= 30
    assert len([r for r in has(r"\bwill be\b") if r.label != "threat"]) >= 30
    assert len([r for r in has(r"\bjoint\b") if r.label != "offer"]) >= 30
    assert len([r for r in has(r"\b(will not|won't) (allow|tolerate|accept)\b") if r.label == "denial"]) >= 20


def test_shipped_articles_are_many_varied_and_shaped_like_reporting():
    corpus = shipped_corpus()
    rows = [r for r in corpus.train if r.in_article]
    assert len(corpus.articles) >= 150 and len(rows) >= 3000
    assert len({a.meta["dispute"] for a in corpus.articles.values()}) >= 60
    assert {a.meta["outlet"] for a in corpus.articles.values()} == {"wire", "broadsheet", "regional", "analysis"}
    assert len({a.meta.get("writer") for a in corpus.articles.values()}) >= 5
    share = Counter(r.label for r in rows)
    assert 0.5 <= share["assessment"] / len(rows) <= 0.8, share  # not balanced: reporting is mostly assessment
    assert all(share[label] >= 100 for label in LABELS), share
    follow_ups = sum(bool(re.search(r"\b(he|she|they) (said|added)\b", r.text)) for r in rows)
    assert follow_ups >= 100
    read = {r.id for r in corpus.readings}
    assert all(r.id in read for r in rows)  # every article sentence was read a second time


def test_authored_rows_read_with_their_flags():
    rows, problems_found = read_label_file(ROOT / "data/authored.csv")
    assert not problems_found
    assert {r.source for r in rows} == {"authored"}
    assert any(r.hard for r in rows) and any(not r.hard for r in rows)


# Authored articles (data/articles/<id>.txt with its label sheet <id>.csv)
ARTICLE = Path("data/articles/fx-border-post.txt")
SHEET = ARTICLE.with_suffix(".csv")


def test_article_sentence_with_no_row(project):
    edit(SHEET, lambda rows: rows.pop(3))
    assert ("fx-border-post:004: article sentence has no row in any label file: 'Customs staff on both sides "
            "have been idle since the post closed in April.'") in problems()


def test_article_row_whose_text_no_longer_matches(project):
    ARTICLE.write_text(ARTICLE.read_text(encoding="utf-8").replace("within a week", "within a month"), encoding="utf-8")
    message = problems()
    assert ("data/articles/fx-border-post.csv line 4 (id fx-border-post:003): names article 'fx-border-post' as "
            "its source, but its text is not in it") in message


def test_article_row_with_an_unknown_label(project):
    edit(SHEET, lambda rows: rows[0].update(label="proposal"))
    assert ("data/articles/fx-border-post.csv line 2 (id fx-border-post:001): unknown label 'proposal'; expected one "
            "of threat, demand, denial, offer, assessment") in problems()


def test_article_row_naming_another_article(project):
    edit(SHEET, lambda rows: rows[0].update(source="fx-river-gates"))
    assert ("data/articles/fx-border-post.csv line 2 (id fx-border-post:001): source 'fx-river-gates' differs from "
            "its article 'fx-border-post'") in problems()


def test_article_without_a_label_sheet(project):
    SHEET.unlink()
    assert ("data/articles/fx-border-post.txt: no label sheet fx-border-post.csv beside it; make one with "
            "`speechacts segment data/articles/fx-border-post.txt --csv > data/articles/fx-border-post.csv`") in problems()


def test_label_sheet_without_an_article(project):
    ARTICLE.unlink()
    assert "data/articles/fx-border-post.csv: a label sheet with no article fx-border-post.txt beside it" in problems()


@pytest.mark.parametrize("line, message", [
    ("# dispute: border | outlet: wire | date: 2024-05-11\n",
     "data/articles/fx-border-post.txt: provenance line lacks sources; its first line must read '# dispute: ..."),
    ("# dispute: border | outlet: blog | date: 2024-05-11 | sources: https://example.org/fixture-source\n",
     "data/articles/fx-border-post.txt: outlet 'blog' is not one of wire, broadsheet, regional, analysis"),
    ("# dispute: border | outlet: wire | date: May 2024 | sources: https://example.org/fixture-source\n",
     "data/articles/fx-border-post.txt: date 'May 2024' is not YYYY-MM-DD"),
    ("# dispute: border | outlet: wire | date: 2024-05-11 | sources: https://example.org/unread\n",
     "data/articles/fx-border-post.txt: source https://example.org/unread has no fingerprint; run "
     "`speechacts sources fingerprint` on the excerpts read"),
])
def test_bad_provenance_line(project, line, message):
    text = ARTICLE.read_text(encoding="utf-8")
    ARTICLE.write_text(line + text.split("\n", 1)[1], encoding="utf-8")
    assert message in problems()


def test_article_copying_five_words_of_its_source_is_refused(project):
    # the fixture source reads "... said the gates would stay shut until the autumn rains came."
    ARTICLE.write_text(ARTICLE.read_text(encoding="utf-8").replace(
        "Hauliers say queues", "Officials said the gates would stay shut until the autumn. Hauliers say queues"),
        encoding="utf-8")
    message = problems()
    assert ("data/articles/fx-border-post.txt: copies 5 words from https://example.org/fixture-source: "
            "'the gates would stay shut'; rephrase it") in message
    assert "'would stay shut until the'" in message and "'Officials said the gates would'" not in message


def test_article_reusing_five_words_of_a_seed_article_is_refused(project):
    ARTICLE.write_text(ARTICLE.read_text(encoding="utf-8").replace(
        "Hauliers say queues", "Both sides gave no sign that they had narrowed their differences. Hauliers say queues"),
        encoding="utf-8")
    assert (f"data/articles/fx-border-post.txt: reuses 5 words of the seed article {SEED_NAME}: "
            "'gave no sign that they'; rephrase it") in problems()


def test_short_lines_may_repeat_across_articles_but_not_across_isolated_rows(project):
    for path in (ARTICLE, Path("data/articles/fx-fishing-quota.txt")):
        path.write_text(path.read_text(encoding="utf-8") + "No date has been set.\n", encoding="utf-8")
        edit(path.with_suffix(".csv"), lambda rows, p=path: rows.append(
            {"id": f"{p.stem}:{len(rows) + 1:03d}", "source": p.stem, "label": "assessment",
             "text": "No date has been set.", "note": ""}))
    validate(DataConfig())  # two articles may share a stock line
    edit(AUTHORED, lambda rows: rows[0].update(text="No date has been set."))
    assert ("data/articles/fx-border-post.csv line 10 (id fx-border-post:009): duplicate text, same as "
            "data/authored.csv line 2 (id authored-0001)") in problems()


def test_missing_articles_folder(project):
    assert "data/none: articles folder not found (data.articles_dir; null for none)" in problems(
        DataConfig(articles_dir=Path("data/none")))
    assert not any(r.in_article for r in validate(DataConfig(articles_dir=None)).train)


def test_a_header_only_label_file_is_refused_and_the_data_card_kept(project, capsys):
    from speechacts.cli import main

    Path("data/contrast.csv").write_text("id,source,label,text\n", encoding="utf-8")
    card = Path("data/prepared/DATA_CARD.md")
    card.parent.mkdir(parents=True)
    card.write_text("the card of the last good data\n")
    assert "data/contrast.csv: no rows under the header; a label file needs at least one labelled sentence" in problems()
    for command in ("validate", "prepare"):
        assert main([command]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: validation failed with 1 problem(s):") and "data/contrast.csv: no rows" in err
    assert card.read_text() == "the card of the last good data\n"


def test_an_unterminated_quote_is_reported_on_its_own_line(project, capsys):
    from speechacts.cli import main

    rows = read_rows(AUTHORED)
    for i, row in enumerate(rows):
        row["text"], row["note"] = f"Plain sentence number {i} without commas or quotes.", ""
    rows[8]["text"] = '"An opening quote never closed'  # line 10
    write_rows(AUTHORED, rows)
    lines = AUTHORED.read_text(encoding="utf-8").splitlines(keepends=True)
    lines[9] = lines[9].replace('"""An opening quote never closed"', '"An opening quote never closed')
    lines[11] = lines[11].replace("number 10 without", 'number 10 "without')  # line 12: the quote that closes it
    AUTHORED.write_text("".join(lines), encoding="utf-8")
    message = ('data/authored.csv line 10: a quote (") opened on this line is not closed on it, so the field runs on '
               'to line 12; close it, or write a quote inside a field as two ("")')
    assert message in problems()
    assert main(["validate"]) == 2
    assert capsys.readouterr().err == f"error: {message}\n"


def test_include_hard_false_drops_exactly_the_hard_rows(project):
    corpus = validate(DataConfig())
    hard = [r.id for r in corpus.train if r.hard]
    assert len(hard) == HARD_IN_TINY_PROJECT
    kept = select(corpus.train, DataConfig(include_hard=False))
    assert [r.id for r in kept] == [r.id for r in corpus.train if r.id not in hard]
    assert select(corpus.train, DataConfig(include_hard=True)) == corpus.train
