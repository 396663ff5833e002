"""The prepare job: validate the labels against the seed articles and write the data card."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from speechacts.config import DataConfig
from speechacts.data import Corpus, Row, validate
from speechacts.labels import LABELS
from speechacts.segment import segment_seeds

PREPARED_DIR = Path("data/prepared")


def table(title: str, rows: list[Row], key, columns: list[str]) -> list[str]:
    """A markdown table of label counts (rows) by `key` (columns), with totals."""
    lines = [f"| {title} | " + " | ".join(columns) + " | total |", "|---" * (len(columns) + 2) + "|"]
    for label in LABELS:
        cells = [sum(1 for r in rows if r.label == label and key(r) == col) for col in columns]
        lines.append(f"| {label} | " + " | ".join(map(str, cells)) + f" | {sum(cells)} |")
    totals = [sum(1 for r in rows if key(r) == col) for col in columns]
    lines.append("| **total** | " + " | ".join(map(str, totals)) + f" | {sum(totals)} |")
    return lines


def shortcut_report(corpus: Corpus):
    from speechacts import shortcuts

    return shortcuts.report([(r.text, r.label) for r in corpus.train if not r.in_article],
                            [(r.text, r.label) for r in corpus.train if r.in_article])


def data_card(corpus: Corpus, shortcut=None) -> str:
    """Markdown: counts per label by kind of text and by hard flag, the authored articles, the
    shortcut check, and the seed lines left out."""
    from speechacts import shortcuts

    rows = corpus.train + corpus.test
    test_ids = {r.id for r in corpus.test}
    kind = lambda r: "seed articles (test)" if r.id in test_ids else ("articles" if r.in_article else "isolated")  # noqa: E731
    columns = [c for c in ("isolated", "articles", "seed articles (test)") if any(kind(r) == c for r in rows)]
    isolated = [r for r in corpus.train if not r.in_article]
    hard = lambda r: "hard" if r.hard else "not hard"  # noqa: E731
    topics = sorted({r.topic for r in corpus.train if r.topic and not r.in_article})
    article_rows = [r for r in corpus.train if r.in_article]
    lines = ["# Data card", "",
             f"{len(corpus.train)} training sentences ({len(corpus.train) - len(article_rows)} isolated, "
             f"{len(article_rows)} in {len(corpus.articles)} authored articles), {len(corpus.test)} test "
             f"sentences (the seed articles, never trained on), {len(corpus.excluded)} seed lines left out.",
             "", "## Labels by kind of text", ""]
    lines += table("label", rows, kind, columns)
    if article_rows:
        lines += ["", "Label mix of article sentences: " + ", ".join(
            f"{label} {sum(r.label == label for r in article_rows) / len(article_rows):.0%}" for label in LABELS)]
    if isolated:
        lines += ["", "## Isolated sentences by hard flag", ""]
        lines += table("label", isolated, hard, ["hard", "not hard"])
    if corpus.articles:
        lines += ["", *articles_section(corpus)]
    if corpus.readings:
        from speechacts import agreement

        writers = {name: a.meta.get("writer", "?") for name, a in corpus.articles.items()}
        lines += ["", "## Second reading", "", agreement.summary(corpus.readings, writers)]
    lines += ["", *shortcuts.markdown(shortcut or shortcut_report(corpus))]
    if topics:
        lines += ["", "## Isolated sentences by topic", "", "| topic | sentences |", "|---|---|"]
        lines += [f"| {t} | {sum(1 for r in corpus.train if r.topic == t and not r.in_article)} |" for t in topics]
    lines += ["", "## Seed lines left out of the labelled set", "", "| id | reason | text |", "|---|---|---|"]
    lines += [f"| {r.id} | {r.label} | {r.text} |" for r in corpus.excluded]
    return "\n".join(lines) + "\n"


def articles_section(corpus: Corpus) -> list[str]:
    """Counts of the authored articles: by outlet kind, sentence kind, length and dispute."""
    from collections import Counter
    from statistics import median

    articles = corpus.articles.values()
    rows = [r for r in corpus.train if r.in_article]
    per_article = Counter(r.source for r in rows)
    disputes = Counter(a.meta.get("dispute", "?") for a in articles)
    outlets = Counter(a.meta.get("outlet", "?") for a in articles)
    kinds = Counter(r.kind for r in rows)
    left_out = Counter(seg.reason for a in articles for seg in a.segments if not seg.is_body)
    sizes = sorted(per_article.values())
    lines = ["## Authored articles", "",
             f"{len(corpus.articles)} articles on {len(disputes)} disputes; "
             f"{len(rows)} labelled sentences, {sizes[0]} to {sizes[-1]} per article (median {median(sizes):g}).", "",
             "| outlet kind | articles |", "|---|---|"]
    lines += [f"| {name} | {n} |" for name, n in sorted(outlets.items())]
    lines += ["", "| sentence kind | sentences |", "|---|---|"]
    lines += [f"| {name} | {n} |" for name, n in sorted(kinds.items())]
    if left_out:
        lines += ["", "Lines left out of the body: "
                  + ", ".join(f"{n} {reason}" for reason, n in sorted(left_out.items()))]
    return lines


def add_missing_rows(cfg: DataConfig) -> int:
    """Append seed sentences and left-out lines that have no row yet (labels left blank)."""
    corpus_ids: set[str] = set()
    for path in [*cfg.train, *cfg.test, cfg.excluded]:
        if Path(path).is_file():
            with open(path, encoding="utf-8", newline="") as f:
                corpus_ids |= {rec["id"] for rec in csv.DictReader(f)}
    added = 0
    labels_path = Path(cfg.test[0])
    for segments in segment_seeds(cfg.seeds_dir).values():
        for seg in segments:
            if seg.id in corpus_ids:
                continue
            path = labels_path if seg.is_body else Path(cfg.excluded)
            header = ["id", "source", "label", "text", "note"] if seg.is_body else ["id", "source", "reason", "text"]
            new_file = not path.is_file()
            with open(path, "a", encoding="utf-8", newline="") as f:
                writer = csv.DictWriter(f, fieldnames=header, lineterminator="\n", extrasaction="ignore")
                if new_file:
                    writer.writeheader()
                writer.writerow({"id": seg.id, "source": seg.source, "label": "", "reason": seg.reason,
                                 "text": seg.text, "note": ""})
            added += 1
    return added


def run(cfg: DataConfig, out_dir: Path = PREPARED_DIR) -> tuple[Corpus, str]:
    """Validate, then write the segmented seed articles and the data card; return the card."""
    corpus = validate(cfg)  # raises before anything is written
    card = data_card(corpus)
    out_dir.mkdir(parents=True, exist_ok=True)
    with open(out_dir / "sentences.jsonl", "w", encoding="utf-8") as f:
        for segments in corpus.seeds.values():
            for seg in segments:
                f.write(json.dumps({"id": seg.id, "source": seg.source, "index": seg.index, "kind": seg.kind,
                                    "reason": seg.reason, "text": seg.text}, ensure_ascii=False) + "\n")
    (out_dir / "DATA_CARD.md").write_text(card, encoding="utf-8")
    return corpus, card
