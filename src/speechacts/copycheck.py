"""Keeps authored articles in the project's own words: no run of COPY_RUN words from a source.

Every authored article names the public reports it draws on in its provenance line
(`sources: URL URL ...`). What the writer read of each source is not committed; its
fingerprint is: the hashes of every COPY_RUN-word run (lower-cased words, punctuation
dropped), one file per source in data/sources/. The check refuses an article that shares
a hashed run with the fingerprint of a source it names, unless the run is a name or a title (at least
NAME_WORDS of its words capitalised or numbers, as written in the article: "Serbian
President Aleksandar Vucic said").

    speechacts sources fingerprint DIR   # excerpt files (first line: URL: ...) -> data/sources/
    speechacts sources check [ARTICLE ...]
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

from speechacts.errors import DataError

COPY_RUN = 5
NAME_WORDS = 3
SOURCES_DIR = Path("data/sources")
TOKEN = re.compile(r"[A-Za-z0-9]+(?:['’][A-Za-z]+)?")


def tokens(text: str) -> list[str]:
    return [t.replace("’", "'") for t in TOKEN.findall(text)]


def run_hash(run: list[str]) -> str:
    return hashlib.blake2b(" ".join(w.casefold() for w in run).encode(), digest_size=8).hexdigest()


def fingerprint(text: str) -> set[str]:
    words = tokens(text)
    return {run_hash(words[i:i + COPY_RUN]) for i in range(len(words) - COPY_RUN + 1)}


def is_name(run: list[str]) -> bool:
    return sum(w[0].isupper() or w[0].isdigit() for w in run) >= NAME_WORDS


def source_key(url: str) -> str:
    return hashlib.sha1(url.strip().encode()).hexdigest()[:16]


def write_fingerprint(url: str, text: str, out_dir: Path = SOURCES_DIR) -> Path:
    """Add the runs of one excerpt to the fingerprint of its source (several excerpts may share a URL)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{source_key(url)}.txt"
    known = read_fingerprint(path)[1] if path.is_file() else set()
    lines = [f"# url: {url.strip()}", *sorted(known | fingerprint(text))]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def read_fingerprint(path: Path) -> tuple[str, set[str]]:
    lines = path.read_text(encoding="utf-8").splitlines()
    if not lines or not lines[0].startswith("# url: "):
        raise DataError(f"{path}: not a source fingerprint (its first line must be '# url: ...')")
    return lines[0][len("# url: "):], {line for line in lines[1:] if line}


def load_fingerprints(sources_dir: Path = SOURCES_DIR) -> dict[str, set[str]]:
    """{url: hashes} for every fingerprint file."""
    if not sources_dir.is_dir():
        return {}
    return dict(read_fingerprint(path) for path in sorted(sources_dir.glob("*.txt")))


def fingerprint_excerpts(folder: Path, out_dir: Path = SOURCES_DIR) -> list[Path]:
    """Fingerprint every excerpt file under folder: first line 'URL: ...', then the text read."""
    written = []
    for path in sorted(folder.rglob("*.txt")):
        head, _, text = path.read_text(encoding="utf-8").partition("\n")
        if not head.lower().startswith("url:"):
            raise DataError(f"{path}: an excerpt file must start with a line 'URL: <address>'")
        written.append(write_fingerprint(head[4:].strip(), text, out_dir))
    return sorted(set(written))


def copied_runs(text: str, fingerprints: dict[str, set[str]]) -> list[tuple[str, str]]:
    """(run as written in the article, source URL) for every copied run that is not a name."""
    words = tokens(text)
    found = []
    for i in range(len(words) - COPY_RUN + 1):
        run = words[i:i + COPY_RUN]
        if is_name(run):
            continue
        h = run_hash(run)
        for url, hashes in fingerprints.items():
            if h in hashes:
                found.append((" ".join(run), url))
    return found


def article_problems(name: str, text: str, sources: list[str], fingerprints: dict[str, set[str]]) -> list[str]:
    """An article with no sources, a source with no fingerprint, or a run copied from one of
    its sources. Only the sources it names count: two reports may share a stock phrase ("the
    end of the year") without either copying the other."""
    problems = []
    if not sources:
        problems.append(f"{name}: its provenance line names no sources ('sources: URL ...')")
    for url in sources:
        if url not in fingerprints:
            problems.append(f"{name}: source {url} has no fingerprint; run "
                            "`speechacts sources fingerprint` on the excerpts read")
    for run, url in copied_runs(text, {url: fingerprints[url] for url in sources if url in fingerprints}):
        problems.append(f"{name}: copies {COPY_RUN} words from {url}: {run!r}; rephrase it")
    return problems
