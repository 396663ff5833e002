"""The annotate job: a label sheet for a new article, pre-labelled by a model, most doubtful first.

    speechacts annotate ARTICLE.txt --dispute ... --outlet wire --date 2024-05-02 --writer ... --sources URL ...

copies the article into the articles folder (data/articles/<id>.txt) under its provenance line
and writes its label sheet beside it (<id>.csv), so the next `make run` trains on it once the
labels are filled in. `--out FILE` writes only the sheet, anywhere, and copies nothing.

The sheet is a label file (id, source, label, text, note) with the model's suggestion: predicted,
confidence (its probability), runner_up, and `prefilled` ("yes" where `--accept-above P` filled
in the label). Rows come in order of doubt: the smallest margin between the two most probable
labels first, so the sentences the model is least sure of are checked while attention is fresh.
Validation refuses the sheet while a label is empty or a pre-filled label is not confirmed.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from speechacts.config import DataConfig
from speechacts.data import LABEL_COLUMNS, OUTLETS, PREFILLED, SUGGESTION_COLUMNS, provenance_problems
from speechacts.errors import DataError
from speechacts.labels import LABELS
from speechacts.segment import METADATA_PREFIX, Segment, read_article, segment_article, split_metadata

SHEET_COLUMNS = (*LABEL_COLUMNS, "note", *SUGGESTION_COLUMNS)
PROVENANCE = ("dispute", "outlet", "date", "writer", "sources")  # the line annotate writes, in this order
ARTICLE_ID = re.compile(r"[a-z0-9]+(-[a-z0-9]+)*")


@dataclass(frozen=True)
class Suggestion:
    """One body sentence and the model's probability for every label."""

    segment: Segment
    proba: np.ndarray  # in LABELS order

    @property
    def ranked(self) -> list[int]:
        return list(np.argsort(-self.proba, kind="stable"))

    @property
    def predicted(self) -> str:
        return LABELS[self.ranked[0]]

    @property
    def runner_up(self) -> str:
        return LABELS[self.ranked[1]]

    @property
    def confidence(self) -> float:
        return float(self.proba[self.ranked[0]])

    @property
    def margin(self) -> float:
        """Top probability minus the second: near 0, the model hesitates between two labels."""
        return float(self.proba[self.ranked[0]] - self.proba[self.ranked[1]])


def by_doubt(segments: list[Segment], proba: np.ndarray) -> list[Suggestion]:
    """Suggestions for the segments, smallest margin first (ties in article order)."""
    suggestions = [Suggestion(segment, row) for segment, row in zip(segments, proba)]
    return sorted(suggestions, key=lambda s: (s.margin, s.segment.index))


def sheet_rows(suggestions: list[Suggestion], accept_above: float | None) -> list[dict[str, str]]:
    """Label-file rows; `label` is pre-filled (and marked) where confidence exceeds accept_above."""
    rows = []
    for s in suggestions:
        accept = accept_above is not None and s.confidence > accept_above
        rows.append({"id": s.segment.id, "source": s.segment.source, "label": s.predicted if accept else "",
                     "text": s.segment.text, "note": "", "predicted": s.predicted,
                     "confidence": f"{s.confidence:.3f}", "runner_up": s.runner_up,
                     "prefilled": PREFILLED if accept else ""})
    return rows


def write_sheet(rows: list[dict[str, str]], path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=SHEET_COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    return path


def provenance_line(meta: dict[str, str]) -> str:
    """'# dispute: ... | outlet: ... | date: ... | writer: ... | sources: ...', then any other keys."""
    keys = [*PROVENANCE, *(key for key in meta if key not in PROVENANCE)]
    return METADATA_PREFIX + " | ".join(f"{key}: {meta[key]}" for key in keys if meta.get(key))


def check_provenance(path: Path, meta: dict[str, str]) -> None:
    """Refuse to copy an article whose provenance is incomplete or malformed, naming the options."""
    missing = [key for key in PROVENANCE if not meta.get(key)]
    if missing:
        raise DataError(f"{path}: to copy it into the training articles, give its provenance: "
                        f"{' '.join('--' + key for key in missing)} (outlet one of {', '.join(OUTLETS)}, "
                        "date YYYY-MM-DD, sources the URLs it draws on); or --out FILE to write only the sheet")
    problems = provenance_problems(path, meta)
    if problems:
        raise DataError("; ".join(problems))


def destination(article: Path, articles_dir: Path, seeds_dir: Path) -> tuple[Path, Path]:
    """(article copy, sheet) in the articles folder; refuses a seed's name, a bad id, or overwriting."""
    name = article.stem
    if (seeds_dir / f"{name}.txt").is_file():
        raise DataError(f"{article}: {name!r} is a seed article (the test, never trained on); "
                        "use --out FILE to write only a sheet")
    if not ARTICLE_ID.fullmatch(name):
        raise DataError(f"{article}: the file name {name!r} becomes the article id, which must be lowercase "
                        "letters, digits and hyphens; rename the file")
    if not articles_dir.is_dir():
        raise DataError(f"{articles_dir}: articles folder not found; give --articles-dir DIR")
    copy, sheet = articles_dir / f"{name}.txt", articles_dir / f"{name}.csv"
    if copy.exists() and copy.resolve() != article.resolve():
        raise DataError(f"{copy} already exists; rename your article, or annotate {copy} itself")
    if sheet.exists():
        raise DataError(f"{sheet} already exists and may hold labels; move it away, or use --out FILE")
    return copy, sheet


@dataclass
class AnnotateResult:
    sheet: Path
    article: Path | None  # the copy in the articles folder; None with --out
    rows: list[dict[str, str]]

    @property
    def prefilled(self) -> int:
        return sum(row["prefilled"] == PREFILLED for row in self.rows)


def run(article: Path, out: Path | None = None, model: str | None = None, tracking_uri: str | None = None,
        accept_above: float | None = None, articles_dir: Path | None = None,
        provenance: dict[str, str] | None = None, seeds_dir: Path | None = None) -> AnnotateResult:
    """Check everything, label the article's body sentences, then write the copy and the sheet."""
    from speechacts.api import load_classifier

    if accept_above is not None and not 0 < accept_above < 1:
        raise DataError(f"--accept-above must be a probability between 0 and 1, got {accept_above}")
    meta, text = split_metadata(read_article(article))
    meta |= {key: value for key, value in (provenance or {}).items() if value}
    copy = None
    if out is None:
        check_provenance(article, meta)
        defaults = DataConfig()
        copy, out = destination(article, articles_dir or defaults.articles_dir, seeds_dir or defaults.seeds_dir)
    body = [segment for segment in segment_article(text, article.stem) if segment.is_body]
    if not body:
        raise DataError(f"{article}: no body sentences to label (every line was left out)")
    proba = load_classifier(model, tracking_uri).predict_proba([segment.text for segment in body])
    rows = sheet_rows(by_doubt(body, proba), accept_above)
    if copy is not None:
        copy.write_text(provenance_line(meta) + "\n" + text.strip("\n") + "\n", encoding="utf-8")
    return AnnotateResult(write_sheet(rows, out), copy, rows)
