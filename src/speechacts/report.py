"""The report job: one self-contained HTML page showing the speech acts a model finds in an article.

The article appears as written (headline, standfirst, paragraphs). Each body sentence is
highlighted in its act's colour (the Okabe-Ito palette, safe for colour-blind readers), carries
its label as text and a border pattern of its own, and shows the label with all five
probabilities on hover or keyboard focus (Tab). Sentences whose top probability is below
`min_confidence` are marked unsure; lines left out of the body (captions, headings, credits,
source lines) are shown greyed with the reason. A legend counts the sentences per act.

The page has no script and fetches nothing: its Content-Security-Policy forbids every load
but the inline style.
"""

from __future__ import annotations

from collections import Counter
from html import escape
from pathlib import Path

import numpy as np

from speechacts.errors import DataError
from speechacts.labels import LABELS, top_labels
from speechacts.segment import Segment, paragraphs, read_article

# act -> (colour, light tint behind black text, border pattern under the sentence)
STYLES = {
    "threat": ("#D55E00", "#F2CFB2", "solid"),
    "demand": ("#E69F00", "#FAECB2", "dashed"),
    "denial": ("#0072B2", "#B2D5E8", "double"),
    "offer": ("#009E73", "#B2E2D5", "dotted"),
    "assessment": ("#6E6E6E", "#EDEDED", "none"),
}
DEFAULT_MIN_CONFIDENCE = 0.5

CSS = """
body { font: 17px/1.7 Georgia, 'Times New Roman', serif; color: #1a1a1a; max-width: 46rem; margin: 2rem auto;
       padding: 0 1rem; }
header.about, nav.legend, .tip { font-family: system-ui, -apple-system, 'Segoe UI', sans-serif; }
header.about { font-size: .85rem; color: #444; }
nav.legend ul { list-style: none; padding: 0; display: flex; flex-wrap: wrap; gap: .4rem 1rem; font-size: .9rem; }
h1 { font-size: 1.6rem; line-height: 1.35; }
.standfirst { font-size: 1.1rem; font-style: italic; }
article p, article h1 { position: relative; }  /* the tooltip opens under the paragraph, never off the page */
.s { padding: .1em .15em; border-bottom: 3px solid transparent; border-radius: 2px;
     color: inherit; -webkit-box-decoration-break: clone; box-decoration-break: clone; }
.s:focus { outline: 3px solid #000; outline-offset: 2px; }
.tag { font: 600 .62rem/1 system-ui, sans-serif; text-transform: uppercase; letter-spacing: .04em;
       border: 1px solid; border-radius: 3px; padding: .1em .3em; margin-left: .3em; background: #fff;
       vertical-align: .15em; white-space: nowrap; }
.unsure { outline: 2px dashed #000; outline-offset: 1px; }
.unsure .tag::after { content: " ?"; }
.tip { display: none; position: absolute; left: 0; top: 100%; z-index: 2; min-width: 13rem; margin-top: .3rem;
       padding: .5rem .7rem; background: #fff; color: #1a1a1a; border: 1px solid #333; border-radius: 4px;
       box-shadow: 0 2px 8px rgba(0, 0, 0, .25); font-size: .8rem; font-style: normal; font-weight: normal;
       line-height: 1.4; }
.s:hover .tip, .s:focus .tip, .s:target .tip { display: block; }
.tip .row { display: flex; justify-content: space-between; gap: 1rem; }
.tip .top { font-weight: 700; }
.skipped { color: #5f5f5f; background: #f4f4f4; font-size: .9rem; padding: .2rem .5rem; border-left: 3px solid #999; }
.skipped .reason { font: italic .75rem system-ui, sans-serif; margin-left: .5em; }
.swatch { display: inline-block; width: 2.2em; height: 1.1em; vertical-align: -.2em; margin-right: .3em;
          border-radius: 2px; border-bottom: 3px solid transparent; }
"""


def act_css() -> str:
    """One rule per act: its tint, its border pattern, its tag colour."""
    rules = []
    for label, (colour, tint, pattern) in STYLES.items():
        border = f"3px {pattern} {colour}" if pattern != "none" else "3px solid transparent"
        rules.append(f".act-{label} {{ background: {tint}; border-bottom: {border}; }}\n"
                     f".act-{label} .tag {{ color: #000; border-color: {colour}; }}")
    return "\n".join(rules)


def tooltip(tip_id: str, label: str, proba: np.ndarray, unsure: bool) -> str:
    rows = "".join(f'<span class="row{" top" if name == label else ""}"><span>{name}</span>'
                   f'<span>{p:.0%}</span></span>' for name, p in sorted(zip(LABELS, proba), key=lambda x: -x[1]))
    note = '<span class="row">unsure: below the confidence threshold</span>' if unsure else ""
    return f'<span class="tip" role="tooltip" id="{tip_id}">{rows}{note}</span>'


def sentence(segment: Segment, label: str, proba: np.ndarray, min_confidence: float) -> str:
    """A body sentence: highlighted, labelled, focusable, its probabilities in a tooltip."""
    confidence = float(proba.max())
    unsure = confidence < min_confidence
    classes = f"s act-{label}" + (" unsure" if unsure else "")
    tip_id = f"tip-{segment.index:03d}"
    return (f'<mark class="{classes}" id="s-{segment.index:03d}" tabindex="0" data-id="{escape(segment.id)}" '
            f'data-label="{label}" data-confidence="{confidence:.3f}" aria-describedby="{tip_id}">'
            f'<span class="text">{escape(segment.text)}</span><span class="tag">{label}</span>'
            f'{tooltip(tip_id, label, proba, unsure)}</mark>')


def skipped(segment: Segment) -> str:
    return (f'<p class="skipped" data-id="{escape(segment.id)}" data-reason="{escape(segment.reason or "")}">'
            f'<span class="text">{escape(segment.text)}</span>'
            f'<span class="reason">skipped: {escape(segment.reason or "")}</span></p>')


def legend(counts: Counter, unsure: int, skipped_lines: int, min_confidence: float) -> str:
    items = "".join(f'<li class="legend-item" data-label="{label}"><span class="swatch act-{label}"></span>'
                    f'<span class="name">{label}</span> <span class="count">{counts[label]}</span></li>'
                    for label in LABELS)
    return (f'<nav class="legend" aria-label="Legend"><ul>{items}'
            f'<li class="legend-item" data-label="unsure"><span class="unsure">unsure</span> '
            f'<span class="count">{unsure}</span> (top probability below {min_confidence:.2f})</li>'
            f'<li class="legend-item" data-label="skipped"><span class="skipped">skipped</span> '
            f'<span class="count">{skipped_lines}</span></li></ul></nav>')


def render(text: str, source: str, model, min_confidence: float = DEFAULT_MIN_CONFIDENCE,
           model_name: str = "") -> str:
    """The HTML page of an article, labelled by `model` (anything with predict_proba(texts))."""
    grouped = paragraphs(text, source)
    body = [segment for paragraph in grouped for segment in paragraph if segment.is_body]
    if not body:
        raise DataError(f"{source}: no body sentences to label (every line was left out)")
    scored = model.predict_proba([s.text for s in body])
    labels = dict(zip((s.index for s in body), top_labels(scored)))
    proba = dict(zip((s.index for s in body), scored))
    counts = Counter(labels.values())
    unsure = sum(float(p.max()) < min_confidence for p in proba.values())
    parts = []
    for paragraph in grouped:
        first = paragraph[0]
        if not first.is_body:
            parts.append(skipped(first))
            continue
        inner = " ".join(sentence(s, labels[s.index], proba[s.index], min_confidence) for s in paragraph)
        tag, attrs = {"headline": ("h1", ""), "standfirst": ("p", ' class="standfirst"')}.get(first.kind, ("p", ""))
        parts.append(f"<{tag}{attrs}>{inner}</{tag}>")
    title = escape(grouped[0][0].text)
    about = (f"Speech acts in <b>{escape(source)}</b>: {len(body)} sentences labelled"
             + (f" by {escape(model_name)}" if model_name else "")
             + ". Hover over a sentence, or move to it with Tab, to see the probability of every act.")
    return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Speech acts: {title}</title>
<style>{CSS}{act_css()}</style>
</head>
<body>
<header class="about"><p>{about}</p>
{legend(counts, unsure, sum(1 for p in grouped if not p[0].is_body), min_confidence)}
</header>
<main><article>
{chr(10).join(parts)}
</article></main>
</body>
</html>
"""


def run(article: Path, out: Path, model: str | None = None, tracking_uri: str | None = None,
        min_confidence: float = DEFAULT_MIN_CONFIDENCE) -> Path:
    """Write the report of an article file, labelled by the model a source names (default the champion)."""
    from speechacts.api import load_classifier
    from speechacts.sources import DEFAULT_SOURCE

    text = read_article(article)
    if not 0 <= min_confidence <= 1:
        raise DataError(f"--min-confidence must be a probability between 0 and 1, got {min_confidence}")
    classifier = load_classifier(model, tracking_uri)
    page = render(text, article.stem, classifier, min_confidence, model_name=f"{model or DEFAULT_SOURCE} "
                  f"({classifier.family})")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(page, encoding="utf-8")
    return out
