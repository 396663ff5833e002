"""Keeps the authored corpus apart from the seed articles and free of near-duplicates.

Two checks on word n-grams (lower-cased words, punctuation dropped):
- a sentence that shares any SEED_NGRAM-word run with a seed article reuses its wording;
- two sentences whose word-trigram sets have a Jaccard similarity of NEAR_DUPLICATE or more
  are near-duplicates (one was made from the other by swapping names or numbers).
"""

from __future__ import annotations

import re
from collections import defaultdict
from typing import Protocol

SEED_NGRAM = 4
SHINGLE = 3
NEAR_DUPLICATE = 0.4

WORD = re.compile(r"[a-z0-9]+(?:['’][a-z]+)?")


class HasText(Protocol):
    text: str
    where: str


def words(text: str) -> list[str]:
    return [w.replace("’", "'") for w in WORD.findall(text.casefold())]


def ngrams(tokens: list[str], n: int) -> set[tuple[str, ...]]:
    return {tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1)}


def jaccard(a: set, b: set) -> float:
    return len(a & b) / len(a | b) if a and b else 0.0


def seed_overlaps(rows: list[HasText], articles: dict[str, str], n: int = SEED_NGRAM) -> list[str]:
    """Rows that share an n-word run with a seed article."""
    seed_grams = {name: ngrams(words(text), n) for name, text in articles.items()}
    problems = []
    for row in rows:
        grams = ngrams(words(row.text), n)
        for name, theirs in seed_grams.items():
            shared = grams & theirs
            if shared:
                phrase = " ".join(sorted(shared)[0])
                problems.append(f"{row.where}: reuses wording of seed article {name!r}: {phrase!r}; "
                                "rephrase it so the article stays unseen")
    return problems


def near_duplicates(rows: list[HasText], threshold: float = NEAR_DUPLICATE) -> list[str]:
    """Pairs of rows whose word-trigram sets are at least `threshold` similar."""
    shingles = [ngrams(words(row.text), SHINGLE) for row in rows]
    index: dict[tuple[str, ...], list[int]] = defaultdict(list)
    problems = []
    for i, grams in enumerate(shingles):
        candidates = {j for gram in grams for j in index[gram]}
        for j in sorted(candidates):
            score = jaccard(grams, shingles[j])
            if score >= threshold:
                problems.append(f"{rows[i].where}: near-duplicate of {rows[j].where} "
                                f"(trigram Jaccard {score:.2f} >= {threshold}); rewrite one of them")
        for gram in grams:
            index[gram].append(i)
    return problems


def corpus_overlap_problems(rows: list[HasText], articles: dict[str, str]) -> list[str]:
    return seed_overlaps(rows, articles) + near_duplicates(rows)
