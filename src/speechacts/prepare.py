"""The prepare job: validate the labels against the seed articles and write the data card."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from speechacts.config import DataConfig
from speechacts.data import AUTHORED, Corpus, Row, validate
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


def data_card(corpus: Corpus) -> str:
    """Markdown: counts per label by source and by hard flag, and the lines left out."""
    rows = corpus.train + corpus.test
    sources = sorted({r.source for r in rows}, key=lambda s: (s != AUTHORED, s))
    hard = lambda r: f"{r.source if r.source == AUTHORED else 'seed'}, {'hard' if r.hard else 'not hard'}"  # noqa: E731
    hard_columns = [c for c in ("authored, hard", "authored, not hard", "seed, not hard")
                    if any(hard(r) == c for r in rows)]
    topics = sorted({r.topic for r in rows if r.topic})
    lines = ["# Data card", "",
             f"{len(corpus.train)} training sentences, {len(corpus.test)} test sentences (the seed "
             f"articles), {len(corpus.excluded)} seed lines left out; {len(topics)} topics in the "
             "authored corpus.", "", "## Labels by source", ""]
    lines += table("label", rows, lambda r: r.source, sources)
    lines += ["", "## Labels by hard flag", ""]
    lines += table("label", rows, hard, hard_columns)
    if topics:
        lines += ["", "## Authored sentences by topic", "", "| topic | sentences |", "|---|---|"]
        lines += [f"| {t} | {sum(1 for r in rows if r.topic == t)} |" for t in topics]
    lines += ["", "## Seed lines left out of the labelled set", "", "| id | reason | text |", "|---|---|---|"]
    lines += [f"| {r.id} | {r.label} | {r.text} |" for r in corpus.excluded]
    return "\n".join(lines) + "\n"


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
