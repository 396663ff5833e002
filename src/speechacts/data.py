"""Label files: read, validate against the seed articles, load as a `datasets.Dataset`.

A label file is a CSV with the columns id, source, label, text and, optionally, topic, hard
and note. The left-out lines of the seed articles live in their own CSV (id, source, reason,
text). `validate` checks everything at once and raises one DataError that lists every
problem with its file and line; nothing is written when it fails.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass, field
from pathlib import Path

from speechacts.config import DataConfig
from speechacts.errors import DataError
from speechacts.labels import LABELS
from speechacts.overlap import corpus_overlap_problems
from speechacts.segment import Segment, read_article, seed_articles, segment_article

LABEL_COLUMNS = ("id", "source", "label", "text")
OPTIONAL_COLUMNS = ("topic", "hard", "note")
EXCLUDED_COLUMNS = ("id", "source", "reason", "text")
AUTHORED = "authored"
MAX_PROBLEMS_SHOWN = 30


@dataclass(frozen=True)
class Row:
    """One labelled sentence, with where it came from in its file."""

    id: str
    source: str
    label: str
    text: str
    topic: str = ""
    hard: bool = False
    note: str = ""
    file: str = ""
    line: int = 0

    @property
    def where(self) -> str:
        return f"{self.file} line {self.line} (id {self.id})"


@dataclass
class Corpus:
    """Validated rows: `train` and `test` as the config splits them, and the left-out lines."""

    train: list[Row]
    test: list[Row]
    excluded: list[Row] = field(default_factory=list)  # label holds the reason
    seeds: dict[str, list[Segment]] = field(default_factory=dict)  # every seed article, segmented


def read_csv(path: Path, required: tuple[str, ...], optional: tuple[str, ...] = ()) -> list[dict]:
    """Rows of a UTF-8 CSV as dicts with a '_line' key; refuses bad encoding and columns."""
    if not path.is_file():
        raise DataError(f"{path}: data file not found (check data.* in the config)")
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise DataError(
            f"{path} line {line}: not UTF-8 (byte 0x{raw[exc.start]:02x}); save the file as UTF-8"
        ) from None
    reader = csv.DictReader(io.StringIO(text, newline=""))
    header = reader.fieldnames or []
    missing = [col for col in required if col not in header]
    if missing:
        raise DataError(
            f"{path}: missing column(s) {', '.join(missing)}; the header must have "
            f"{', '.join(required)}" + (f" and may have {', '.join(optional)}" if optional else "")
        )
    unknown = [col for col in header if col not in required + optional]
    if unknown:
        raise DataError(f"{path}: unknown column(s) {', '.join(unknown)}; allowed: {', '.join(required + optional)}")
    rows = []
    for record in reader:
        if None in record:
            raise DataError(f"{path} line {reader.line_num}: more fields than the header has columns")
        record = {key: (value or "").strip() for key, value in record.items()}
        record["_line"] = reader.line_num
        rows.append(record)
    return rows


def parse_hard(value: str, where: str) -> bool:
    if value.lower() in ("", "false", "0", "no"):
        return False
    if value.lower() in ("true", "1", "yes"):
        return True
    raise DataError(f"{where}: hard must be true or false, got {value!r}")


def read_label_file(path: str | Path) -> tuple[list[Row], list[str]]:
    """Rows of one label file, and the problems found in single rows."""
    path = Path(path)
    rows, problems = [], []
    for rec in read_csv(path, LABEL_COLUMNS, OPTIONAL_COLUMNS):
        where = f"{path} line {rec['_line']} (id {rec['id'] or '?'})"
        if not rec["id"]:
            problems.append(f"{path} line {rec['_line']}: missing id")
        if not rec["source"]:
            problems.append(f"{where}: missing source; use '{AUTHORED}' or a seed article's name")
        if not rec["text"]:
            problems.append(f"{where}: empty text")
        if not rec["label"]:
            problems.append(f"{where}: missing label; expected one of {', '.join(LABELS)}")
        elif rec["label"] not in LABELS:
            problems.append(f"{where}: unknown label {rec['label']!r}; expected one of {', '.join(LABELS)}")
        try:
            hard = parse_hard(rec.get("hard", ""), where)
        except DataError as exc:
            problems.append(str(exc))
            hard = False
        rows.append(Row(rec["id"], rec["source"], rec["label"], rec["text"], rec.get("topic", ""),
                        hard, rec.get("note", ""), str(path), rec["_line"]))
    return rows, problems


def read_excluded_file(path: str | Path) -> list[Row]:
    path = Path(path)
    return [Row(rec["id"], rec["source"], rec["reason"], rec["text"], file=str(path), line=rec["_line"])
            for rec in read_csv(path, EXCLUDED_COLUMNS)]


def normalise(text: str) -> str:
    """Text compared for duplicates: case, quotes and spacing ignored."""
    text = re.sub("[“”„«»\"‘’']", "", text.casefold())
    return " ".join(text.split())


def duplicate_problems(rows: list[Row]) -> list[str]:
    problems, ids, texts = [], {}, {}
    for row in rows:
        if row.id in ids:
            problems.append(f"{row.where}: duplicate id, first used at {ids[row.id].where}")
        ids.setdefault(row.id, row)
        key = normalise(row.text)
        if key and key in texts:
            problems.append(f"{row.where}: duplicate text, same as {texts[key].where}")
        texts.setdefault(key, row)
    return problems


def seed_problems(rows: list[Row], excluded: list[Row], seeds: dict[str, list[Segment]],
                  articles: dict[str, str]) -> list[str]:
    """Rows that disagree with the seed articles, and seed sentences with no row."""
    problems = []
    by_id = {seg.id: seg for segs in seeds.values() for seg in segs}
    for row in rows:
        if row.source == AUTHORED:
            continue
        if row.source not in seeds:
            problems.append(f"{row.where}: unknown source {row.source!r}; expected '{AUTHORED}' or a "
                            f"seed article: {', '.join(seeds)}")
            continue
        seg = by_id.get(row.id)
        if row.text not in articles[row.source]:
            problems.append(f"{row.where}: names seed article {row.source!r} as its source, but its text "
                            "is not in it")
        elif seg is None:
            problems.append(f"{row.where}: no sentence of {row.source!r} has this id")
        elif seg.text != row.text:
            problems.append(f"{row.where}: text no longer matches its seed article, which has {seg.text!r}")
        elif not seg.is_body:
            problems.append(f"{row.where}: this line is left out of the body ({seg.reason}); "
                            "it belongs in the excluded file, not a label file")
    for row in excluded:
        seg = by_id.get(row.id)
        if seg is None or seg.text != row.text:
            problems.append(f"{row.where}: no longer matches a line of its seed article; re-run "
                            "`speechacts prepare --write-excluded` after changing a seed article")
        elif seg.is_body:
            problems.append(f"{row.where}: the segmenter reads this line as a body sentence, not as left out")
    labelled = {row.id for row in rows} | {row.id for row in excluded}
    for segs in seeds.values():
        for seg in segs:
            if seg.id not in labelled:
                what = "seed sentence" if seg.is_body else f"left-out line ({seg.reason})"
                problems.append(f"{seg.id}: {what} has no row in any label file: {seg.text!r}")
    return problems


def validate(cfg: DataConfig) -> Corpus:
    """Read and check every label file, the excluded file and the seed articles."""
    articles = {name: read_article(path) for name, path in seed_articles(cfg.seeds_dir).items()}
    seeds = {name: segment_article(text, name) for name, text in articles.items()}
    train, test, problems = [], [], []
    for files, bucket in ((cfg.train, train), (cfg.test, test)):
        for path in files:
            rows, found = read_label_file(path)
            bucket.extend(rows)
            problems.extend(found)
    excluded = read_excluded_file(cfg.excluded)
    everything = train + test
    problems += duplicate_problems(everything + excluded)
    problems += seed_problems(everything, excluded, seeds, articles)
    problems += corpus_overlap_problems([r for r in everything if r.source == AUTHORED], articles)
    if problems:
        shown = problems[:MAX_PROBLEMS_SHOWN]
        more = len(problems) - len(shown)
        raise DataError(f"validation failed with {len(problems)} problem(s):\n  " + "\n  ".join(shown)
                        + (f"\n  ... and {more} more" if more else ""))
    return Corpus(train, test, excluded, seeds)


def select(rows: list[Row], cfg: DataConfig) -> list[Row]:
    """Training rows kept by the config's filters; refuses an empty result."""
    kept = [r for r in rows if (cfg.topics is None or r.topic in cfg.topics) and (cfg.include_hard or not r.hard)]
    if not kept:
        topics = sorted({r.topic for r in rows if r.topic})
        raise DataError(f"no training rows left after filtering (data.topics={cfg.topics}, "
                        f"data.include_hard={cfg.include_hard}); known topics: {', '.join(topics)}")
    return kept


def to_dataset(rows: list[Row]):
    """Rows -> `datasets.Dataset` with a ClassLabel in the fixed label order."""
    from datasets import ClassLabel, Dataset, Features, Value

    features = Features({"id": Value("string"), "source": Value("string"), "topic": Value("string"),
                         "hard": Value("bool"), "text": Value("string"), "label": ClassLabel(names=list(LABELS))})
    return Dataset.from_dict({
        "id": [r.id for r in rows], "source": [r.source for r in rows], "topic": [r.topic for r in rows],
        "hard": [r.hard for r in rows], "text": [r.text for r in rows],
        "label": [LABELS.index(r.label) for r in rows]}, features=features)
