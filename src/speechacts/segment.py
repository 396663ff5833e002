"""Articles -> sentences with stable ids, and the lines that are not body sentences.

An article is plain UTF-8 text with one paragraph per line. Lines at the top that start with
"# " are metadata (the provenance line of an authored article) and are not part of the text.
The first line after them is the headline; every paragraph line is split into sentences by
pysbd. Photo captions and credits, section headings and "Source:" lines are recognised from
their shape and kept out, with a reason.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from speechacts import utf8
from speechacts.errors import DataError

QUOTES = "“”\"„«»"
TERMINAL = ".!?…"
HEADING_MAX_WORDS = 10
METADATA_PREFIX = "# "
SOURCE_LINE = re.compile(r"^\s*(sources?|with reporting by|additional reporting by)\s*:", re.I)
CREDIT_LINE = re.compile(r"^\s*(photo|photograph|image|picture|credit|video)s?\s*:", re.I)
# "... Switzerland [Denis Balibouse/Reuters]" or "... (AP Photo/Jane Doe)"
TRAILING_CREDIT = re.compile(r"[\[(][^\[\]()]*(/|photo|getty|reuters|afp|\bap\b|epa)[^\[\]()]*[\])]\s*$", re.I)


@dataclass(frozen=True)
class Segment:
    """One sentence of an article, or one line left out of the body with its reason."""

    source: str
    index: int
    text: str
    kind: str  # headline | standfirst | body | excluded
    reason: str | None = None

    @property
    def id(self) -> str:
        return f"{self.source}:{self.index:03d}"

    @property
    def is_body(self) -> bool:
        return self.reason is None


@lru_cache(maxsize=1)
def _segmenter():
    import pysbd

    return pysbd.Segmenter(language="en", clean=False, char_span=True)


def split_sentences(paragraph: str) -> list[str]:
    """Split one paragraph into sentences, also inside quotations.

    pysbd never splits inside quotation marks, so a quote holding two sentences would stay
    one. We segment a copy with the double quotes blanked out (same length, so spans map
    back) and cut the original at the starts of the sentences found; a closing quote and
    an attribution after it stay with the sentence they follow.
    """
    masked = re.sub(f"[{QUOTES}]", " ", paragraph)
    starts = []
    for span in _segmenter().segment(masked):
        start = span.start
        while start > 0 and paragraph[start - 1] in QUOTES:
            start -= 1  # the opening quote belongs to the sentence it opens
        starts.append(start)
    starts = sorted(set(starts) | {0})
    pieces = [paragraph[a:b].strip() for a, b in zip(starts, starts[1:] + [len(paragraph)])]
    return [piece for piece in pieces if piece]


def exclusion_reason(line: str, next_line: str | None) -> str | None:
    """Why a (non-headline) line is not body text, or None if it is body text."""
    if SOURCE_LINE.match(line):
        return "source line"
    if CREDIT_LINE.match(line):
        return "photo credit"
    if TRAILING_CREDIT.search(line):
        return "photo caption"
    if is_heading(line):
        if next_line is not None and exclusion_reason(next_line, None) in ("photo caption", "photo credit"):
            return "photo title"
        return "section heading"
    return None


def is_heading(line: str) -> bool:
    """A short line that does not end a sentence: a section heading or a photo title."""
    bare = line.rstrip().rstrip(QUOTES + "’'")
    return len(line.split()) <= HEADING_MAX_WORDS and not bare.endswith(tuple(TERMINAL))


def split_metadata(text: str) -> tuple[dict[str, str], str]:
    """({key: value} from the leading "# key: value | key: value" lines, the article text)."""
    lines = text.splitlines()
    meta: dict[str, str] = {}
    while lines and (lines[0].startswith(METADATA_PREFIX) or not lines[0].strip()):
        for field in lines.pop(0)[len(METADATA_PREFIX):].split(" | "):
            key, sep, value = field.partition(":")
            if sep:
                meta[key.strip().lower()] = value.strip()
    return meta, "\n".join(lines)


def segment_article(text: str, source: str) -> list[Segment]:
    """All segments of an article in order; ids are `source:NNN`, stable across re-runs."""
    return [segment for paragraph in paragraphs(text, source) for segment in paragraph]


def paragraphs(text: str, source: str) -> list[list[Segment]]:
    """The segments of an article, grouped by the line (paragraph) they come from."""
    _, text = split_metadata(text)
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    out: list[list[Segment]] = []
    count = 0
    body_paragraphs = 0
    for i, line in enumerate(lines):
        next_line = lines[i + 1] if i + 1 < len(lines) else None
        reason = None if i == 0 else exclusion_reason(line, next_line)
        if reason is not None:
            count += 1
            out.append([Segment(source, count, line, "excluded", reason)])
            continue
        kind = "headline" if i == 0 else ("standfirst" if body_paragraphs == 1 else "body")
        body_paragraphs += 1
        sentences = [line] if i == 0 else split_sentences(line)
        out.append([Segment(source, count + j, sentence, kind) for j, sentence in enumerate(sentences, 1)])
        count += len(sentences)
    return out


def read_article(path: str | Path) -> str:
    """Read an article as UTF-8, or raise DataError naming the file and the bad byte."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: article not found")
    text = utf8.decode(path.read_bytes(), str(path))
    if not text.strip():
        raise DataError(f"{path}: the article is empty")
    return text


def seed_articles(seeds_dir: str | Path) -> dict[str, Path]:
    """{source name: path} for every *.txt article in the seeds folder."""
    seeds_dir = Path(seeds_dir)
    if not seeds_dir.is_dir():
        raise DataError(f"{seeds_dir}: seeds folder not found")
    articles = {path.stem: path for path in sorted(seeds_dir.glob("*.txt"))}
    if not articles:
        raise DataError(f"{seeds_dir}: no seed articles (*.txt) found")
    return articles


def segment_seeds(seeds_dir: str | Path) -> dict[str, list[Segment]]:
    """{source name: segments} for every seed article."""
    return {name: segment_article(read_article(path), name) for name, path in seed_articles(seeds_dir).items()}
