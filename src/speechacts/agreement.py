"""The second reading of the authored articles: agreement between two blind readers.

Each article's writer labelled it first. A second reader, who did not write it, labelled
all its sentences without seeing those labels. data/second_reading/<article>.csv keeps both:
id, first (the writer's label), second (the reader's), settled (the label the disagreement
was settled on, empty where the two agreed) and note. The final label lives in the article's
label sheet; where the readers disagreed it must equal `settled`.

    speechacts agreement    # kappa and agreement, per label and per writer
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from speechacts.data import read_csv
from speechacts.errors import DataError
from speechacts.labels import LABELS

SECOND_READING_DIR = Path("data/second_reading")
COLUMNS = ("id", "first", "second")
OPTIONAL = ("settled", "note")


@dataclass(frozen=True)
class Reading:
    id: str
    article: str
    first: str
    second: str
    settled: str
    note: str


def read_readings(folder: Path = SECOND_READING_DIR) -> list[Reading]:
    if not folder.is_dir():
        raise DataError(f"{folder}: second-reading folder not found")
    readings, problems = [], []
    for path in sorted(folder.glob("*.csv")):
        for rec in read_csv(path, COLUMNS, OPTIONAL):
            where = f"{path} line {rec['_line']}"
            for key in ("first", "second") + (("settled",) if rec.get("settled") else ()):
                if rec[key] not in LABELS:
                    problems.append(f"{where}: {key} label {rec[key]!r} is not one of {', '.join(LABELS)}")
            if rec["first"] != rec["second"] and not rec.get("settled"):
                problems.append(f"{where}: the readers disagree ({rec['first']} / {rec['second']}) and "
                                "`settled` is empty")
            readings.append(Reading(rec["id"], path.stem, rec["first"], rec["second"], rec.get("settled", ""),
                                    rec.get("note", "")))
    if problems:
        raise DataError("second reading: " + "\n  ".join(problems))
    if not readings:
        raise DataError(f"{folder}: no second readings (*.csv)")
    return readings


def kappa(first: list[str], second: list[str]) -> float:
    from sklearn.metrics import cohen_kappa_score

    return float(cohen_kappa_score(first, second, labels=list(LABELS)))


def final_label_problems(readings: list[Reading], final: dict[str, str]) -> list[str]:
    """Sentences read twice that no longer exist, were not read, or whose final label is not the settled one."""
    problems = []
    read = {r.id for r in readings}
    for r in readings:
        if r.id not in final:
            problems.append(f"{r.article}: second reading of {r.id}, which no label sheet has")
        elif r.settled and final[r.id] != r.settled:
            problems.append(f"{r.id}: settled as {r.settled} in the second reading, labelled {final[r.id]} "
                            "in its sheet")
    articles = {r.article for r in readings}
    missing = sorted(i for i in final if i.split(":")[0] in articles and i not in read)
    problems += [f"{i}: in an article that was read twice, but not read" for i in missing]
    return problems


def summary(readings: list[Reading], writers: dict[str, str] | None = None) -> str:
    """Markdown: sentences, agreement, kappa; per label; per writer; how disagreements were settled."""
    first, second = [r.first for r in readings], [r.second for r in readings]
    agree = sum(a == b for a, b in zip(first, second))
    lines = [f"{len(readings)} sentences of {len({r.article for r in readings})} files read twice, blind: "
             f"agreement {agree / len(readings):.3f}, Cohen's kappa {kappa(first, second):.3f}."]
    if writers:
        own = [r for r in readings if r.article in writers]
        if own and len(own) < len(readings):
            f, s = [r.first for r in own], [r.second for r in own]
            lines.append(f"Article sentences alone: {len(own)} of {len({r.article for r in own})} articles, "
                         f"agreement {sum(a == b for a, b in zip(f, s)) / len(own):.3f}, Cohen's kappa "
                         f"{kappa(f, s):.3f}.")
    lines += ["",
             "| label | first reader | second reader | both |", "|---|---|---|---|"]
    for label in LABELS:
        both = sum(a == b == label for a, b in zip(first, second))
        lines.append(f"| {label} | {first.count(label)} | {second.count(label)} | {both} |")
    if writers:
        lines += ["", "| writer | sentences | agreement | kappa |", "|---|---|---|---|"]
        for writer in sorted(set(writers.values())):
            own = [r for r in readings if writers.get(r.article) == writer]
            if own:
                f, s = [r.first for r in own], [r.second for r in own]
                lines.append(f"| {writer} | {len(own)} | {sum(a == b for a, b in zip(f, s)) / len(own):.3f} "
                             f"| {kappa(f, s):.3f} |")
    settled = Counter((r.first, r.second, r.settled) for r in readings if r.first != r.second)
    if settled:
        lines += ["", "Disagreements (first / second -> settled), most frequent first:", ""]
        lines += [f"- {a} / {b} -> {c}: {n}" for (a, b, c), n in settled.most_common()]
    return "\n".join(lines)
