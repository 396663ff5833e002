"""The predict job: label sentences (arguments), an article (--file) or standard input with a saved model.

On a terminal it prints a table; with --format jsonl, or into any pipe, one JSON object per
sentence with `text`, `label` and `scores` (label -> probability), and for an article's
sentences their `position` and `kind`. Warnings, such as a sentence truncated to the model's
maximum length, go to standard error as one line each.

With --lines, the sentences are read, labelled and written BATCH_SIZE at a time, so memory stays
flat however long the input, and output starts with the first batch; on a terminal, standard
error shows a progress bar.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import shutil
import sys
import warnings
from collections.abc import Iterable, Iterator
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, TextIO

from speechacts import utf8
from speechacts.api import check_confidence, check_texts, load_classifier
from speechacts.errors import DataError
from speechacts.labels import LABELS

if TYPE_CHECKING:
    from speechacts.api import Prediction

STDIN = "-"
BATCH_SIZE = 1000  # sentences labelled and written at a time with --lines


@dataclass(frozen=True)
class Request:
    """What to label: loose sentences, sentences one per line as they are read, or one article."""

    sentences: list[str] | None = None
    article: str | None = None
    name: str = "article"
    lines: Iterator[str] | None = None


def main(args: argparse.Namespace) -> int:
    with warnings.catch_warnings():
        warnings.showwarning = one_line_warning
        request = read_request(args.sentences, args.file, args.lines, sys.stdin)
        fmt = args.format or ("table" if sys.stdout.isatty() else "jsonl")
        try:
            options = {"min_confidence": args.min_confidence, "prior": args.prior}
            runtime = getattr(args, "runtime", None)
            if request.lines is not None:
                classifier = load_classifier(args.model, args.tracking_uri, runtime)
                stream(classifier, request.lines, fmt, sys.stdout, progress=sys.stderr.isatty(), **options)
            else:
                write(run(request, args.model, args.tracking_uri, runtime=runtime, **options), fmt, sys.stdout)
        except BrokenPipeError:  # the reader (`| head`) stopped reading: not an error
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 0


def run(request: Request, model: str | None = None, tracking_uri: str | None = None, min_confidence: float = 0.0,
        prior: str | None = None, runtime: str | None = None) -> list[Prediction]:
    """Label a request with the model a source names (default models:/speechacts-classifier@champion)."""
    check_confidence(min_confidence)
    if request.article is not None:
        report_left_out(request)
    classifier = load_classifier(model, tracking_uri, runtime)
    if request.article is None:
        return classifier.predict(request.sentences if request.lines is None else list(request.lines),
                                  min_confidence=min_confidence, prior=prior)
    return classifier.predict_article(request.article, request.name, min_confidence, prior)


def stream(classifier, lines: Iterable[str], fmt: str, out: TextIO, progress: bool = False,
           min_confidence: float = 0.0, prior: str | None = None) -> int:
    """Label lines BATCH_SIZE at a time, writing each batch as soon as it is labelled; returns the count."""
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(unit=" sentences", file=sys.stderr, dynamic_ncols=True, leave=False)
    done, lines = 0, iter(lines)
    while True:
        batch, error = [], None
        try:
            batch.extend(itertools.islice(lines, BATCH_SIZE))
        except DataError as exc:  # a bad line: label the ones read before it, then say so
            error = exc
        if batch:
            write(classifier.predict(batch, min_confidence=min_confidence, prior=prior), fmt, out, start=done)
            done += len(batch)
            if bar is not None:
                bar.update(len(batch))
        if error is not None or len(batch) < BATCH_SIZE:
            break
    if bar is not None:
        bar.close()
    if error is not None:
        raise error
    return done


def read_request(sentences: list[str], file: str | None, lines: bool, stdin: TextIO) -> Request:
    """Sentences from the arguments, else the text of --file or standard input, checked before any model loads."""
    if sentences and file is not None:
        raise DataError("give sentences as arguments or --file, not both")
    if sentences:
        if lines:
            raise DataError("--lines applies to --file or standard input; sentences given as arguments are one each")
        return Request(sentences=check_texts(sentences))
    if file is None and stdin.isatty():
        raise DataError("nothing to label: give sentences as arguments, --file PATH, or pipe text to standard input")
    if file is None or file == STDIN:
        where, name, binary = "standard input", "stdin", stdin.buffer
    else:
        path = Path(file)
        if not path.is_file():
            raise DataError(f"{path}: file not found" if not path.exists() else f"{path}: is not a file")
        where, name, binary = str(path), path.stem, open(path, "rb")
    if lines:
        sentences = read_lines(binary, where, close=binary is not stdin.buffer)
        first = next(sentences, None)
        if first is None:
            raise DataError(f"{where}: empty, nothing to label")
        return Request(lines=itertools.chain([first], sentences))
    try:
        return Request(article=decode(binary.read(), where), name=name)
    finally:
        if binary is not stdin.buffer:
            binary.close()


def read_lines(binary: IO[bytes], where: str, close: bool = False) -> Iterator[str]:
    """The non-blank lines of a UTF-8 byte stream, stripped, read as they come; a bad byte is a
    DataError naming its line (`stream` labels the lines before it first)."""
    offset = 0
    with binary if close else nullcontext():
        for number, raw in enumerate(binary, 1):
            line = utf8.decode(raw, where, number, offset)
            offset += len(raw)
            if line.strip():
                yield line.strip()


def decode(raw: bytes, where: str) -> str:
    """UTF-8 text (a byte-order mark is dropped), or a DataError naming the bad byte or the emptiness."""
    text = utf8.decode(raw, where)
    if not text.strip():
        raise DataError(f"{where}: empty, nothing to label")
    return text


def report_left_out(request: Request) -> None:
    """Say on stderr which lines of the article are not body sentences (they are not labelled)."""
    from speechacts.segment import segment_article

    left_out = [s for s in segment_article(request.article, request.name) if not s.is_body]
    if left_out:
        print(f"note: left out {len(left_out)} line(s) that are not body sentences: "
              + ", ".join(f"{s.index} ({s.reason})" for s in left_out), file=sys.stderr)


def one_line_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """warnings.showwarning that prints `warning: <message>` on one line, without source or traceback."""
    print(f"warning: {' '.join(str(message).split())}", file=sys.stderr)


def write(predictions: list[Prediction], fmt: str, out: TextIO, start: int = 0) -> None:
    """Predictions as JSON lines, or as table rows numbered from start + 1 (with the head when start is 0)."""
    if fmt == "jsonl":
        for p in predictions:
            record = p.to_dict()
            record["scores"] = {label: round(value, 6) for label, value in record["scores"].items()}
            out.write(json.dumps(record, ensure_ascii=False) + "\n")
    elif predictions or not start:
        out.write(table(predictions, shutil.get_terminal_size((120, 24)).columns, start) + "\n")
    out.flush()


def table(predictions: list[Prediction], width: int, start: int = 0) -> str:
    """#, label, every label's probability, and the text cut to the terminal's width."""
    head = f"{'#':>4}  {'label':<12}" + "".join(f"{label[:6]:>7}" for label in LABELS) + "  text"
    lines = [head, "-" * min(width, len(head) + 40)] if not start else []
    room = max(20, width - len(head) + len("text"))
    for i, p in enumerate(predictions, start + 1):
        text = p.text if len(p.text) <= room else p.text[:room - 1] + "…"
        shown = p.label + ("?" if p.unsure else "")  # unsure: below --min-confidence
        lines.append(f"{p.position or i:>4}  {shown:<12}" + "".join(f"{p.scores[label]:>7.2f}" for label in LABELS)
                     + f"  {text}")
    return "\n".join(lines)
