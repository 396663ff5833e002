"""Decoding the text people give (label files, articles, sentences to label) as UTF-8, with the
first bad byte named by line and offset."""

from __future__ import annotations

import codecs

from speechacts.errors import DataError


def decode(raw: bytes, where: str, line: int = 1, offset: int = 0) -> str:
    """The text of raw (a leading byte-order mark dropped), or a DataError naming the first byte that
    is not UTF-8. `line` and `offset` say where raw starts in what is read (a file read line by line)."""
    bom = len(codecs.BOM_UTF8) if raw.startswith(codecs.BOM_UTF8) else 0
    try:
        return raw[bom:].decode("utf-8")
    except UnicodeDecodeError as exc:
        at = bom + exc.start
        line += raw.count(b"\n", 0, at)
        raise DataError(f"{where} line {line}: not UTF-8 (byte 0x{raw[at]:02x} at offset {offset + at}); "
                        "save it as UTF-8") from None
