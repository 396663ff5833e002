"""Hashed word and character n-gram counts of a batch of sentences, in numpy alone.

The same features as scikit-learn's HashingVectorizer with `analyzer="word"` (tokens of two or
more word characters, `(?u)\\b\\w\\w+\\b`) and `analyzer="char_wb"` (character n-grams inside
each whitespace-separated word padded with one space), after lowercasing and stripping accents
(NFKD, combining marks dropped), but computed for the whole batch at once: the sentences are
joined into one array of code points, every n-gram is hashed from prefix sums of a polynomial
hash (mod 2**64), and the (sentence, bucket) pairs are counted with one sort. No Python loop
runs per sentence or per n-gram, which makes it about 15 times faster than scikit-learn's.

The hash function is not scikit-learn's murmurhash, so the buckets differ: models are trained
and used with this module only. HASH_VERSION names the scheme; a change to it needs retraining.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass

import numpy as np

HASH_VERSION = 1
SEP = "\x00"  # between sentences in the joined batch; never inside an n-gram
P = np.uint64(0x100000001B3)  # polynomial base (odd, so invertible mod 2**64)
P_INV = np.uint64(pow(int(P), -1, 2**64))
MIX = np.uint64(0x9E3779B97F4A7C15)  # multiply-shift: a prefix sum -> well-spread bucket bits
BIGRAM = np.uint64(0xC2B2AE3D27D4EB4F)
ASCII_SPACE = np.array([chr(c).isspace() for c in range(128)] + [False])
ASCII_WORD = np.array([chr(c).isalnum() or chr(c) == "_" for c in range(128)] + [False])


@dataclass(frozen=True)
class Counts:
    """A sparse (sentence, bucket) -> count matrix: rows ascending, (row, col) pairs unique."""

    rows: np.ndarray  # int64
    cols: np.ndarray  # int64
    counts: np.ndarray  # float64
    n: int  # sentences


def code_points(texts: list[str]) -> np.ndarray:
    """The batch as one uint32 array: ' text1 SEP text2 ... ', lowercased, accents stripped."""
    joined = f" {f' {SEP} '.join(texts)} "
    if joined.count(SEP) != max(len(texts) - 1, 0):  # a sentence holding SEP: make it a space
        joined = f" {f' {SEP} '.join(t.replace(SEP, ' ') for t in texts)} "
    joined = joined.lower()
    if not joined.isascii():
        joined = unicodedata.normalize("NFKD", joined)
    codes = np.frombuffer(joined.encode("utf-32-le"), dtype=np.uint32)
    if not joined.isascii():
        high = np.flatnonzero(codes > 127)
        unique, inverse = np.unique(codes[high], return_inverse=True)
        combining = np.array([unicodedata.combining(chr(c)) != 0 for c in unique.tolist()])[inverse]
        codes = np.delete(codes, high[combining])
    return codes


def classes(codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(is whitespace, is a word character) of every code point, as Python's str methods say."""
    ascii_index = np.minimum(codes, 128)
    space, word = ASCII_SPACE[ascii_index], ASCII_WORD[ascii_index]
    high = np.flatnonzero(codes > 127)
    if high.size:
        unique, inverse = np.unique(codes[high], return_inverse=True)
        chars = [chr(c) for c in unique.tolist()]
        space[high] = np.array([c.isspace() for c in chars])[inverse]
        word[high] = np.array([c.isalnum() or c == "_" for c in chars])[inverse]
    return space, word


def bucket(hashes: np.ndarray, bits: int) -> np.ndarray:
    return ((hashes ^ (hashes >> np.uint64(29))) * MIX) >> np.uint64(64 - bits)


class Stream:
    """The joined batch with runs of whitespace collapsed to one space, and its prefix hashes."""

    def __init__(self, texts: list[str]):
        codes = code_points(texts)
        space, word = classes(codes)
        keep = np.ones(codes.size, dtype=bool)
        keep[1:] = ~(space[1:] & space[:-1])
        self.space, self.word = space[keep], word[keep]
        values = np.where(self.space, np.uint64(32), codes[keep].astype(np.uint64)) + np.uint64(1)
        self.sep = values == np.uint64(1)
        powers, self.inverse = power_table(values.size + 1)
        with np.errstate(over="ignore"):
            self.prefix = np.concatenate(([np.uint64(0)], np.cumsum(values * powers[:values.size], dtype=np.uint64)))
        self.doc = np.cumsum(self.sep, dtype=np.int64)  # the sentence of each position
        self.n = len(texts)

    def hashes(self, start: np.ndarray, end: np.ndarray) -> np.ndarray:
        """The polynomial hash of each substring [start, end), independent of where it is."""
        with np.errstate(over="ignore"):
            return (self.prefix[end] - self.prefix[start]) * self.inverse[start]

    def char_wb(self, low: int, high: int, bits: int) -> Counts:
        """Character n-grams of length low..high inside each word padded with spaces."""
        size, dtype = self.sep.size, key_type(self.n, bits)
        sep_before = np.concatenate(([0], np.cumsum(self.sep, dtype=np.int32)))
        space_before = np.concatenate(([0], np.cumsum(self.space, dtype=np.int32)))
        row = self.doc.astype(dtype) << dtype(bits)
        keys = []
        for n in range(low, min(high, size) + 1):
            starts = size - n + 1  # every position an n-gram can start at, as slices: no gathers
            ok = sep_before[n:] == sep_before[:starts]
            if n > 2:  # a space may only open or close the n-gram
                ok &= space_before[n - 1:n - 1 + starts] == space_before[1:1 + starts]
            with np.errstate(over="ignore"):
                gram = (self.prefix[n:] - self.prefix[:starts]) * self.inverse[:starts]
            keys.append((row[:starts] | bucket(gram, bits).astype(dtype))[ok])
        return count(keys, bits, self.n)

    def words(self, low: int, high: int, bits: int) -> Counts:
        """Word n-grams of length low..high over tokens of two or more word characters."""
        word = self.word
        edges = np.flatnonzero(np.diff(np.concatenate(([False], word, [False])).astype(np.int8)))
        start, end = edges[0::2], edges[1::2]
        long = end - start >= 2
        start, end = start[long], end[long]
        hashes, doc = self.hashes(start, end), self.doc[start]
        dtype = key_type(self.n, bits)
        row = doc.astype(dtype) << dtype(bits)
        keys = []
        gram = hashes
        for n in range(1, high + 1):
            if n > 1:
                with np.errstate(over="ignore"):
                    gram = gram[:-1] * BIGRAM + hashes[n - 1:]
            if n >= low:
                same = doc[: doc.size - n + 1] == doc[n - 1:]
                keys.append((row[: doc.size - n + 1] | bucket(gram, bits).astype(dtype))[same])
        return count(keys, bits, self.n)


def key_type(n: int, bits: int) -> type:
    """The narrowest unsigned type for sentence << bits | bucket: a narrower key sorts faster."""
    return np.uint32 if n << bits <= 2**32 else np.uint64


POWERS: tuple[np.ndarray, np.ndarray] = (np.ones(1, dtype=np.uint64), np.ones(1, dtype=np.uint64))


def power_table(size: int) -> tuple[np.ndarray, np.ndarray]:
    """(P**i, P**-i) mod 2**64 for i < size, at least; grown and kept for the next batch."""
    global POWERS
    if POWERS[0].size < size:
        size = max(size, 2 * POWERS[0].size)
        with np.errstate(over="ignore"):
            POWERS = tuple(np.concatenate(([np.uint64(1)], np.cumprod(np.full(size - 1, base, dtype=np.uint64))))
                           for base in (P, P_INV))
    return POWERS


def count(keys: list[np.ndarray], bits: int, n: int) -> Counts:
    """Sum the (sentence, bucket) pairs, given as sentence << bits | bucket, with one sort."""
    dtype = key_type(n, bits)
    keys = np.concatenate(keys or [np.zeros(0, dtype=dtype)])
    keys.sort()
    if not keys.size:
        empty = np.zeros(0, dtype=np.intp)
        return Counts(empty, empty, np.zeros(0), n)
    starts = np.flatnonzero(np.concatenate(([True], keys[1:] != keys[:-1])))
    counts = np.diff(np.append(starts, keys.size)).astype(np.float64)
    unique = keys[starts]
    return Counts((unique >> dtype(bits)).astype(np.intp), (unique & dtype((1 << bits) - 1)).astype(np.intp),
                  counts, n)
