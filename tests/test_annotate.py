import numpy as np
import pytest

from conftest import SEED_ARTICLE, read_rows, write_rows
from speechacts import annotate, load_classifier
from speechacts.cli import main
from speechacts.config import DataConfig
from speechacts.data import validate
from speechacts.errors import DataError
from speechacts.segment import Segment, segment_article

NEW_ARTICLE = """Coastal states trade offers over a shared fishing ground
Ministers met for a second day without settling how many boats may work the bank.
The northern delegation said it was willing to cut its own catch by a tenth if patrols were shared.
Its neighbour rejected any link between quotas and patrols.
Fishermen on both coasts have kept their boats in harbour since the spring.
Harbour master Ana Ruiz [Photo/Coast Gazette]
"""
PROVENANCE = ["--dispute", "fixture fishing bank", "--outlet", "regional", "--date", "2024-06-01",
              "--writer", "tester", "--sources", "https://example.org/fixture-source"]


def segments(n: int) -> list[Segment]:
    return [Segment("art", i, f"sentence {i}.", "body") for i in range(1, n + 1)]


def test_rows_come_most_doubtful_first():
    proba = np.array([[0.90, 0.05, 0.02, 0.02, 0.01],   # margin 0.85
                      [0.40, 0.38, 0.10, 0.10, 0.02],   # margin 0.02
                      [0.10, 0.10, 0.50, 0.25, 0.05],   # margin 0.25
                      [0.30, 0.30, 0.20, 0.10, 0.10]])  # margin 0.00, a tie: threat before demand
    ranked = annotate.by_doubt(segments(4), proba)
    assert [s.segment.index for s in ranked] == [4, 2, 3, 1]
    rows = annotate.sheet_rows(ranked, accept_above=None)
    assert [(r["predicted"], r["runner_up"], r["confidence"]) for r in rows] == [
        ("threat", "demand", "0.300"), ("threat", "demand", "0.400"), ("denial", "offer", "0.500"),
        ("threat", "demand", "0.900")]
    assert all(r["label"] == "" and r["prefilled"] == "" for r in rows)


def test_accept_above_prefills_only_confident_rows_and_marks_them():
    proba = np.array([[0.90, 0.05, 0.02, 0.02, 0.01], [0.40, 0.38, 0.10, 0.10, 0.02]])
    rows = annotate.sheet_rows(annotate.by_doubt(segments(2), proba), accept_above=0.8)
    assert [(r["id"], r["label"], r["prefilled"]) for r in rows] == [("art:002", "", ""), ("art:001", "threat", "yes")]


def test_annotate_copies_the_article_with_its_provenance_and_writes_the_sheet_beside_it(project, tiny_baseline_dir, capsys):
    (project / "fx-fishing-bank.txt").write_text(NEW_ARTICLE, encoding="utf-8")
    code = main(["annotate", "fx-fishing-bank.txt", "--model", str(tiny_baseline_dir), "--accept-above", "0.3",
                 *PROVENANCE])
    out = capsys.readouterr().out
    assert code == 0 and "wrote data/articles/fx-fishing-bank.csv: 5 sentences, most doubtful first" in out
    copy = (project / "data/articles/fx-fishing-bank.txt").read_text(encoding="utf-8")
    assert copy == ("# dispute: fixture fishing bank | outlet: regional | date: 2024-06-01 | writer: tester | "
                    "sources: https://example.org/fixture-source\n" + NEW_ARTICLE)
    rows = read_rows(project / "data/articles/fx-fishing-bank.csv")
    assert list(rows[0]) == ["id", "source", "label", "text", "note", "predicted", "confidence", "runner_up", "prefilled"]
    # every body sentence once (the caption is left out), ordered by the model's doubt
    body = [s for s in segment_article(NEW_ARTICLE, "fx-fishing-bank") if s.is_body]
    assert sorted(r["id"] for r in rows) == [s.id for s in body]
    proba = load_classifier(tiny_baseline_dir).predict_proba([r["text"] for r in rows])
    top2 = np.sort(proba, axis=1)[:, -2:]
    margins = top2[:, 1] - top2[:, 0]
    assert list(margins) == sorted(margins)
    assert all((r["prefilled"] == "yes") == (float(r["confidence"]) > 0.3) for r in rows)
    assert all(r["label"] == (r["predicted"] if r["prefilled"] else "") for r in rows)


def test_filled_in_sheet_validates_and_trains_as_an_article(project, tiny_baseline_dir):
    (project / "fx-fishing-bank.txt").write_text(NEW_ARTICLE, encoding="utf-8")
    assert main(["annotate", "fx-fishing-bank.txt", "--model", str(tiny_baseline_dir), "--accept-above", "0.3",
                 *PROVENANCE]) == 0
    sheet = project / "data/articles/fx-fishing-bank.csv"
    with pytest.raises(DataError) as err:
        validate(DataConfig())
    message = str(err.value)
    for row in read_rows(sheet):  # every row is named as unreviewed
        assert f"{sheet.relative_to(project)} line" in message and f"(id {row['id']})" in message
        if row["prefilled"]:
            assert f"(id {row['id']}): unreviewed: the model pre-filled {row['label']!r}; check it" in message
        else:
            assert f"(id {row['id']}): missing label (unreviewed; the model predicted {row['predicted']!r})" in message
    rows = read_rows(sheet)
    for row in rows:
        row.update(label=row["label"] or "assessment", prefilled="confirmed" if row["prefilled"] else "")
    write_rows(sheet, rows)
    corpus = validate(DataConfig())
    added = [r for r in corpus.train if r.source == "fx-fishing-bank"]
    assert len(added) == 5 and all(r.in_article for r in added) and added[0].topic == "fixture fishing bank"


def test_prefilled_but_unconfirmed_row_is_refused(project, tiny_baseline_dir):
    sheet = project / "data/articles/fx-border-post.csv"
    rows = read_rows(sheet)
    rows[2].update(prefilled="yes")
    rows[3].update(prefilled="ok")
    write_rows(sheet, rows, [*rows[0], "prefilled"])
    with pytest.raises(DataError) as err:
        validate(DataConfig())
    assert ("data/articles/fx-border-post.csv line 4 (id fx-border-post:003): unreviewed: the model pre-filled "
            "'offer'; check it, correct it if wrong, then set prefilled to 'confirmed'") in str(err.value)
    assert ("data/articles/fx-border-post.csv line 5 (id fx-border-post:004): prefilled must be empty, 'yes' (the "
            "model's label, unreviewed) or 'confirmed', got 'ok'") in str(err.value)


def test_out_writes_only_the_sheet_even_for_a_seed_article(project, tiny_baseline_dir, capsys):
    assert main(["annotate", str(SEED_ARTICLE), "--out", "sheet.csv", "--model", str(tiny_baseline_dir)]) == 0
    assert len(read_rows(project / "sheet.csv")) == 24
    assert not (project / f"data/articles/{SEED_ARTICLE.name}").exists()


@pytest.mark.parametrize("args, message", [
    (PROVENANCE[:6], "fx-fishing-bank.txt: to copy it into the training articles, give its provenance: --writer "
                     "--sources (outlet one of wire, broadsheet, regional, analysis, date YYYY-MM-DD, sources the URLs "
                     "it draws on); or --out FILE to write only the sheet"),
    ([*PROVENANCE[:3], "blog", *PROVENANCE[4:]], "fx-fishing-bank.txt: outlet 'blog' is not one of wire, broadsheet, regional, analysis"),
    ([*PROVENANCE[:5], "1 June 2024", *PROVENANCE[6:]], "fx-fishing-bank.txt: date '1 June 2024' is not YYYY-MM-DD"),
    ([*PROVENANCE, "--accept-above", "1.5"], "--accept-above must be a probability between 0 and 1, got 1.5"),
    ([*PROVENANCE, "--articles-dir", "nowhere"], "nowhere: articles folder not found; give --articles-dir DIR"),
])
def test_bad_annotate_options(project, tiny_baseline_dir, capsys, args, message):
    (project / "fx-fishing-bank.txt").write_text(NEW_ARTICLE, encoding="utf-8")
    assert main(["annotate", "fx-fishing-bank.txt", "--model", str(tiny_baseline_dir), *args]) == 2
    assert capsys.readouterr().err == f"error: {message}\n"
    assert not (project / "data/articles/fx-fishing-bank.txt").exists()


@pytest.mark.parametrize("name, message", [
    ("2022-01-10-aljazeera-us-russia-geneva-talks", "'2022-01-10-aljazeera-us-russia-geneva-talks' is a seed article "
                                                    "(the test, never trained on); use --out FILE to write only a sheet"),
    ("Fishing_Bank", "the file name 'Fishing_Bank' becomes the article id, which must be lowercase letters, digits "
                     "and hyphens; rename the file"),
    ("fx-border-post", "data/articles/fx-border-post.txt already exists; rename your article, or annotate "
                       "data/articles/fx-border-post.txt itself"),
])
def test_annotate_refuses_a_name_it_cannot_copy_to(project, tiny_baseline_dir, capsys, name, message):
    (project / f"{name}.txt").write_text(NEW_ARTICLE, encoding="utf-8")
    assert main(["annotate", f"{name}.txt", "--model", str(tiny_baseline_dir), *PROVENANCE]) == 2
    assert message in capsys.readouterr().err


def test_annotate_will_not_overwrite_a_label_sheet(project, tiny_baseline_dir, capsys):
    before = (project / "data/articles/fx-border-post.csv").read_text(encoding="utf-8")
    assert main(["annotate", "data/articles/fx-border-post.txt", "--model", str(tiny_baseline_dir)]) == 2
    assert ("data/articles/fx-border-post.csv already exists and may hold labels; move it away, or use --out FILE"
            in capsys.readouterr().err)
    assert (project / "data/articles/fx-border-post.csv").read_text(encoding="utf-8") == before


def test_annotate_says_which_sources_still_need_a_fingerprint(project, tiny_baseline_dir, capsys):
    (project / "fx-fishing-bank.txt").write_text(NEW_ARTICLE, encoding="utf-8")
    assert main(["annotate", "fx-fishing-bank.txt", "--model", str(tiny_baseline_dir), *PROVENANCE[:-1],
                 "https://example.org/fixture-source", "https://example.org/not-read-yet"]) == 0
    assert ("note: 1 source(s) have no fingerprint yet; validation needs one for each: `speechacts sources "
            "fingerprint FOLDER` on the excerpts you read") in capsys.readouterr().out
