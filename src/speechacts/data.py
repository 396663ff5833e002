"""Label files: read, validate against their articles, load as a `datasets.Dataset`.

Three kinds of labelled text:
- isolated sentences (data/authored.csv, data/contrast.csv): source `authored`, no article;
- authored articles (data/articles/<id>.txt, trained on): each with its label sheet
  data/articles/<id>.csv, one row per body sentence, and a provenance line naming the
  dispute, the outlet kind, the date and the sources it draws on;
- seed articles (seeds/*.txt, the test, never trained on): labels in data/seed_labels.csv,
  left-out lines in data/seed_excluded.csv (id, source, reason, text).

A label file is a CSV with the columns id, source, label, text and, optionally, topic, hard
and note. A sheet written by `speechacts annotate` adds the model's suggestion (predicted,
confidence, runner_up: read by people, ignored by training) and `prefilled`: "yes" where the
model filled in the label, which validation refuses until a person sets it to "confirmed".
`validate` checks everything at once and raises one DataError that lists every problem with its
file and line; nothing is written when it fails.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass, field, replace
from pathlib import Path

from speechacts import copycheck, utf8
from speechacts.config import DataConfig
from speechacts.context import article_contexts
from speechacts.errors import DataError
from speechacts.labels import LABELS
from speechacts.overlap import corpus_overlap_problems
from speechacts.segment import Segment, read_article, seed_articles, segment_article, split_metadata

LABEL_COLUMNS = ("id", "source", "label", "text")
SUGGESTION_COLUMNS = ("predicted", "confidence", "runner_up", "prefilled")  # written by `speechacts annotate`
OPTIONAL_COLUMNS = ("topic", "hard", "note", *SUGGESTION_COLUMNS)
PREFILLED, CONFIRMED = "yes", "confirmed"  # values of `prefilled`: the model's label, then a person's check
EXCLUDED_COLUMNS = ("id", "source", "reason", "text")
AUTHORED = "authored"
ISOLATED = "isolated"  # the kind of a sentence that belongs to no article
MAX_PROBLEMS_SHOWN = 30
PROVENANCE_KEYS = ("dispute", "outlet", "date", "sources")
OUTLETS = ("wire", "broadsheet", "regional", "analysis")


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
    kind: str = ISOLATED  # headline | standfirst | body for a sentence of an article
    previous: str = ""  # the sentence before it in its article (context.py)
    headline: str = ""  # its article's headline

    @property
    def where(self) -> str:
        return f"{self.file} line {self.line} (id {self.id})"

    @property
    def in_article(self) -> bool:
        return self.kind != ISOLATED

    @property
    def group(self) -> str:
        """What cross-validation keeps together: the article, or the sentence itself."""
        return self.source if self.in_article else self.id


@dataclass(frozen=True)
class Article:
    """A segmented article and its provenance (empty for seed articles)."""

    name: str
    path: Path
    text: str
    segments: list[Segment]
    meta: dict[str, str] = field(default_factory=dict)


@dataclass
class Corpus:
    """Validated rows: `train` and `test` as the config splits them, and the left-out lines."""

    train: list[Row]
    test: list[Row]
    excluded: list[Row] = field(default_factory=list)  # label holds the reason
    seeds: dict[str, list[Segment]] = field(default_factory=dict)  # every seed article, segmented
    articles: dict[str, Article] = field(default_factory=dict)  # the authored (training) articles
    readings: list = field(default_factory=list)  # agreement.Reading of the blind second reading


def read_csv(path: Path, required: tuple[str, ...], optional: tuple[str, ...] = ()) -> list[dict]:
    """Rows of a UTF-8 CSV as dicts with a '_line' key; refuses bad encoding and columns."""
    if not path.is_file():
        raise DataError(f"{path}: data file not found (check data.* in the config)")
    reader = csv.DictReader(io.StringIO(utf8.decode(path.read_bytes(), str(path)), newline=""))
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
        spanned = sum(value.count("\n") for value in record.values() if isinstance(value, str))
        if spanned:  # a field that runs over lines: a quote opened and never closed on its line
            start = reader.line_num - spanned
            raise DataError(f"{path} line {start}: a quote (\") opened on this line is not closed on it, so the "
                            f"field runs on to line {reader.line_num}; close it, or write a quote inside a field "
                            "as two (\"\")")
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
    records = read_csv(path, LABEL_COLUMNS, OPTIONAL_COLUMNS)
    if not records:
        problems.append(f"{path}: no rows under the header; a label file needs at least one labelled sentence "
                        "(remove it from data.* in the config if it is not needed)")
    for rec in records:
        where = f"{path} line {rec['_line']} (id {rec['id'] or '?'})"
        if not rec["id"]:
            problems.append(f"{path} line {rec['_line']}: missing id")
        if not rec["source"]:
            problems.append(f"{where}: missing source; use '{AUTHORED}' or a seed article's name")
        if not rec["text"]:
            problems.append(f"{where}: empty text")
        if not rec["label"]:
            hint = f" (unreviewed; the model predicted {rec['predicted']!r})" if rec.get("predicted") else ""
            problems.append(f"{where}: missing label{hint}; expected one of {', '.join(LABELS)}")
        elif rec["label"] not in LABELS:
            problems.append(f"{where}: unknown label {rec['label']!r}; expected one of {', '.join(LABELS)}")
        problems += review_problems(rec.get("prefilled", ""), rec["label"], where)
        try:
            hard = parse_hard(rec.get("hard", ""), where)
        except DataError as exc:
            problems.append(str(exc))
            hard = False
        rows.append(Row(rec["id"], rec["source"], rec["label"], rec["text"], rec.get("topic", ""),
                        hard, rec.get("note", ""), str(path), rec["_line"]))
    return rows, problems


def review_problems(prefilled: str, label: str, where: str) -> list[str]:
    """A label the model filled in counts only once a person has confirmed it."""
    if prefilled == PREFILLED:
        return [f"{where}: unreviewed: the model pre-filled {label!r}; check it, correct it if wrong, "
                f"then set prefilled to {CONFIRMED!r}"]
    if prefilled not in ("", CONFIRMED):
        return [f"{where}: prefilled must be empty, {PREFILLED!r} (the model's label, unreviewed) or "
                f"{CONFIRMED!r}, got {prefilled!r}"]
    return []


def read_excluded_file(path: str | Path) -> list[Row]:
    path = Path(path)
    return [Row(rec["id"], rec["source"], rec["reason"], rec["text"], file=str(path), line=rec["_line"])
            for rec in read_csv(path, EXCLUDED_COLUMNS)]


def normalise(text: str) -> str:
    """Text compared for duplicates: case, quotes and spacing ignored."""
    text = re.sub("[“”„«»\"‘’']", "", text.casefold())
    return " ".join(text.split())


def duplicate_problems(rows: list[Row]) -> list[str]:
    """Ids used twice anywhere; texts used twice, except between sentences of articles
    (real reporting repeats short lines such as a bare "he said" sentence)."""
    problems, ids, texts = [], {}, {}
    for row in rows:
        if row.id in ids:
            problems.append(f"{row.where}: duplicate id, first used at {ids[row.id].where}")
        ids.setdefault(row.id, row)
        key = normalise(row.text)
        if key and key in texts and not (row.in_article and texts[key].in_article):
            problems.append(f"{row.where}: duplicate text, same as {texts[key].where}")
        texts.setdefault(key, row)
    return problems


def article_row_problems(rows: list[Row], excluded: list[Row], segmented: dict[str, list[Segment]],
                         texts: dict[str, str], seeds: set[str]) -> list[str]:
    """Rows that disagree with their articles, and article sentences with no row. The seed
    articles must also list each left-out line in the excluded file; authored articles need not
    (the segmenter's reason is the record)."""
    problems = []
    by_id = {seg.id: seg for segs in segmented.values() for seg in segs}
    kind = lambda name: "seed article" if name in seeds else "article"  # noqa: E731
    for row in rows:
        if row.source == AUTHORED:
            continue
        if row.source not in segmented:
            names = ", ".join(sorted(segmented)[:5]) + (" ..." if len(segmented) > 5 else "")
            problems.append(f"{row.where}: unknown source {row.source!r}; expected '{AUTHORED}' or the name of "
                            f"a seed or authored article: {names}")
            continue
        seg = by_id.get(row.id)
        if row.text not in texts[row.source]:
            problems.append(f"{row.where}: names {kind(row.source)} {row.source!r} as its source, but its text "
                            "is not in it")
        elif seg is None:
            problems.append(f"{row.where}: no sentence of {row.source!r} has this id")
        elif seg.text != row.text:
            problems.append(f"{row.where}: text no longer matches its {kind(row.source)}, which has {seg.text!r}")
        elif not seg.is_body:
            problems.append(f"{row.where}: this line is left out of the body ({seg.reason}); "
                            "it belongs in the excluded file, not a label file")
    for row in excluded:
        seg = by_id.get(row.id)
        if seg is None or seg.text != row.text:
            problems.append(f"{row.where}: no longer matches a line of its seed article; re-run "
                            "`speechacts prepare --add-missing` after changing a seed article")
        elif seg.is_body:
            problems.append(f"{row.where}: the segmenter reads this line as a body sentence, not as left out")
    labelled = {row.id for row in rows} | {row.id for row in excluded}
    for name, segs in segmented.items():
        for seg in segs:
            if seg.id not in labelled and (seg.is_body or name in seeds):
                what = f"{kind(name).split()[0]} sentence" if seg.is_body else f"left-out line ({seg.reason})"
                problems.append(f"{seg.id}: {what} has no row in any label file: {seg.text!r}")
    return problems


def placed_in(segments: list[Segment]):
    """A function giving a row of these segments' articles its kind (headline, standfirst, body)
    and its context (previous sentence, headline); a row whose id names no segment keeps its own
    (validation reports it)."""
    kinds = {seg.id: seg.kind for seg in segments}
    around = article_contexts(segments)

    def place(row: Row) -> Row:
        if row.id not in kinds:
            return row
        previous, headline = around.get(row.id, ("", ""))
        return replace(row, kind=kinds[row.id], previous=previous, headline=headline)

    return place


def read_articles(articles_dir: Path) -> tuple[dict[str, Article], list[Row], list[str]]:
    """The authored articles, the rows of their label sheets, and what is wrong with them."""
    if not articles_dir.is_dir():
        raise DataError(f"{articles_dir}: articles folder not found (data.articles_dir; null for none)")
    articles, rows, problems = {}, [], []
    for path in sorted(articles_dir.glob("*.txt")):
        meta, text = split_metadata(read_article(path))
        name = path.stem
        articles[name] = Article(name, path, text, segment_article(text, name), meta)
        problems += provenance_problems(path, meta)
        sheet = path.with_suffix(".csv")
        if not sheet.is_file():
            problems.append(f"{path}: no label sheet {sheet.name} beside it; make one with "
                            f"`speechacts segment {path} --csv > {sheet}` and fill in the labels")
            continue
        found, sheet_problems = read_label_file(sheet)
        problems += sheet_problems
        place = placed_in(articles[name].segments)
        for row in found:
            if row.source != name:
                problems.append(f"{row.where}: source {row.source!r} differs from its article {name!r}")
        rows += [place(replace(row, topic=meta.get("dispute", ""), kind="body")) for row in found]
    for sheet in sorted(articles_dir.glob("*.csv")):
        if not sheet.with_suffix(".txt").is_file():
            problems.append(f"{sheet}: a label sheet with no article {sheet.with_suffix('.txt').name} beside it")
    return articles, rows, problems


def provenance_problems(path: Path, meta: dict[str, str]) -> list[str]:
    missing = [key for key in PROVENANCE_KEYS if not meta.get(key)]
    if missing:
        return [f"{path}: provenance line lacks {', '.join(missing)}; its first line must read "
                "'# dispute: ... | outlet: wire|broadsheet|regional|analysis | date: YYYY-MM-DD | sources: URL ...'"]
    problems = []
    if meta["outlet"] not in OUTLETS:
        problems.append(f"{path}: outlet {meta['outlet']!r} is not one of {', '.join(OUTLETS)}")
    if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", meta["date"]):
        problems.append(f"{path}: date {meta['date']!r} is not YYYY-MM-DD")
    return problems


def copy_problems(articles: dict[str, Article], seed_texts: dict[str, str], sources_dir: Path) -> list[str]:
    """Authored articles that copy their sources, or the seed articles, COPY_RUN words at a time."""
    fingerprints = copycheck.load_fingerprints(sources_dir)
    seed_prints = {f"seed article {name}": copycheck.fingerprint(text) for name, text in seed_texts.items()}
    problems = []
    for article in articles.values():
        problems += copycheck.article_problems(str(article.path), article.text,
                                               article.meta.get("sources", "").split(), fingerprints)
        problems += [f"{article.path}: reuses {copycheck.COPY_RUN} words of the {where}: {run!r}; rephrase it"
                     for run, where in copycheck.copied_runs(article.text, seed_prints)]
    return problems


def validate(cfg: DataConfig) -> Corpus:
    """Read and check every label file, the excluded file, the seed and the authored articles."""
    seed_texts = {name: read_article(path) for name, path in seed_articles(cfg.seeds_dir).items()}
    seeds = {name: segment_article(text, name) for name, text in seed_texts.items()}
    place = placed_in([seg for segs in seeds.values() for seg in segs])
    train, test, problems = [], [], []
    for files, bucket in ((cfg.train, train), (cfg.test, test)):
        for path in files:
            rows, found = read_label_file(path)
            bucket.extend(place(r) if r.source in seeds else r for r in rows)
            problems.extend(found)
    articles: dict[str, Article] = {}
    if cfg.articles_dir is not None:
        articles, article_rows, found = read_articles(Path(cfg.articles_dir))
        clash = sorted(set(articles) & set(seeds))
        if clash:
            raise DataError(f"article name(s) {', '.join(clash)} are both seed (test) and training articles")
        train.extend(article_rows)
        problems.extend(found)
        problems += copy_problems(articles, seed_texts, Path(cfg.sources_dir))
    excluded = read_excluded_file(cfg.excluded)
    everything = train + test
    problems += duplicate_problems(everything + excluded)
    segmented = {**seeds, **{name: a.segments for name, a in articles.items()}}
    texts = {**seed_texts, **{name: a.text for name, a in articles.items()}}
    problems += article_row_problems(everything, excluded, segmented, texts, seeds=set(seeds))
    problems += corpus_overlap_problems([r for r in everything if r.source == AUTHORED], seed_texts)
    if cfg.second_reading_dir is not None and Path(cfg.second_reading_dir).is_dir():
        from speechacts import agreement

        readings = agreement.read_readings(Path(cfg.second_reading_dir))
        problems += agreement.final_label_problems(readings, {r.id: r.label for r in train})
    else:
        readings = []
    if problems:
        shown = problems[:MAX_PROBLEMS_SHOWN]
        more = len(problems) - len(shown)
        raise DataError(f"validation failed with {len(problems)} problem(s):\n  " + "\n  ".join(shown)
                        + (f"\n  ... and {more} more" if more else ""))
    return Corpus(train, test, excluded, seeds, articles, readings)


def select(rows: list[Row], cfg: DataConfig) -> list[Row]:
    """Training rows kept by the config's filters; refuses an empty result."""
    kept = [r for r in rows if (cfg.topics is None or r.topic in cfg.topics) and (cfg.include_hard or not r.hard)]
    if not kept:
        topics = sorted({r.topic for r in rows if r.topic})
        raise DataError(f"no training rows left after filtering (data.topics={cfg.topics}, "
                        f"data.include_hard={cfg.include_hard}); known topics: {', '.join(topics)}")
    return kept

