"""What a model reads beside a sentence: nothing, the sentence before it, or the headline too.

News sentences lean on the one before: "he said" follow-ups, the second half of a split quote
("That patience is over."), a speaker named only earlier. A recipe chooses the context with
`model.context`:
- `none`: the sentence alone;
- `previous`: the body sentence before it in its article (headline and standfirst count; lines
  left out, such as captions, do not); empty for the headline;
- `headline+previous`: the article's headline, then the previous sentence.
Isolated sentences have no article, so their context is empty, and `predict(texts)` on bare
sentences works with empty context. This module is the one place that builds it, for training
rows (data.py) and for articles at prediction time (api.py).
"""

from __future__ import annotations

from collections.abc import Sequence

CONTEXTS = ("none", "previous", "headline+previous")
SEPARATOR = " | "


def article_contexts(segments: Sequence) -> dict[str, tuple[str, str]]:
    """{segment id: (previous sentence, headline)} for the body segments of one article."""
    body = [seg for seg in segments if seg.is_body]
    headline = next((seg.text for seg in body if seg.kind == "headline"), "")
    out = {}
    for i, seg in enumerate(body):
        previous = body[i - 1].text if i > 0 else ""
        out[seg.id] = (previous, headline if seg.kind != "headline" else "")
    return out


def compose(kind: str, previous: str, headline: str) -> str:
    """The context text a model of this kind reads beside a sentence."""
    if kind == "none":
        return ""
    if kind == "previous":
        return previous
    if kind == "headline+previous":
        return SEPARATOR.join(part for part in (headline, previous) if part)
    raise ValueError(f"unknown context {kind!r}; expected one of {', '.join(CONTEXTS)}")


def for_rows(kind: str, rows: Sequence) -> list[str] | None:
    """Contexts of training rows (None when the model reads sentences alone)."""
    if kind == "none":
        return None
    return [compose(kind, row.previous, row.headline) for row in rows]
