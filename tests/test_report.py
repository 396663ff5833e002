import os
import shutil
import subprocess
from collections import Counter
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

from conftest import SEED_ARTICLE, SEED_NAME
from speechacts import load_classifier
from speechacts.cli import main
from speechacts.labels import LABELS
from speechacts.report import STYLES
from speechacts.segment import read_article, segment_article

VOID = {"meta", "br", "img", "link", "input", "hr", "source", "wbr"}
CHROMIUM = next((path for name in ("chromium", "chromium-browser", "google-chrome") if (path := shutil.which(name))), None)
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run", "--hide-scrollbars"]


class Node:
    def __init__(self, tag: str, attrs: dict, parent=None):
        self.tag, self.attrs, self.parent, self.children = tag, attrs, parent, []

    @property
    def classes(self) -> set[str]:
        return set((self.attrs.get("class") or "").split())

    def text(self) -> str:
        return "".join(c if isinstance(c, str) else c.text() for c in self.children)

    def iter(self):
        for child in self.children:
            if isinstance(child, Node):
                yield child
                yield from child.iter()

    def find(self, tag: str | None = None, cls: str | None = None) -> list["Node"]:
        return [n for n in self.iter() if (tag is None or n.tag == tag) and (cls is None or cls in n.classes)]

    def child(self, cls: str) -> "Node":
        (found,) = [c for c in self.children if isinstance(c, Node) and cls in c.classes]
        return found


class TreeBuilder(HTMLParser):
    """The document as a tree of Nodes (the standard library's parser; enough for these checks)."""

    def __init__(self):
        super().__init__()
        self.root = self.current = Node("#document", {})

    def handle_starttag(self, tag, attrs):
        node = Node(tag, dict(attrs), self.current)
        self.current.children.append(node)
        if tag not in VOID:
            self.current = node

    def handle_endtag(self, tag):
        node = self.current
        while node is not self.root and node.tag != tag:
            node = node.parent
        if node is not self.root:
            self.current = node.parent

    def handle_data(self, data):
        self.current.children.append(data)


def parse(html: str) -> Node:
    builder = TreeBuilder()
    builder.feed(html)
    return builder.root


def check_page(dom: Node, model_dir: Path) -> dict[str, int]:
    """Every body sentence once with its predicted act, the skipped lines with their reasons, the legend's
    counts equal to the predictions; returns the counts."""
    text = read_article(SEED_ARTICLE)
    segments = segment_article(text, SEED_NAME)
    predictions = load_classifier(model_dir).predict_article(text, SEED_NAME)
    marks = dom.find("mark", "s")
    assert [m.attrs["data-id"] for m in marks] == [f"{SEED_NAME}:{p.position:03d}" for p in predictions]
    for mark, p in zip(marks, predictions):
        assert mark.child("text").text() == p.text
        assert f"act-{p.label}" in mark.classes and mark.attrs["data-label"] == p.label
        assert [c for c in mark.classes if c.startswith("act-")] == [f"act-{p.label}"]
        assert mark.child("tag").text() == p.label  # readable without colour
        assert mark.attrs["tabindex"] == "0"  # reachable by keyboard
        tip = mark.child("tip")
        assert tip.attrs["role"] == "tooltip" and mark.attrs["aria-describedby"] == tip.attrs["id"]
        assert all(f"{label}{p.scores[label]:.0%}" in tip.text() for label in LABELS)
        assert ("unsure" in mark.classes) == (max(p.scores.values()) < 0.5)
    page_text = dom.find("body")[0].text()
    for p in predictions:
        assert page_text.count(p.text) == 1
    skipped = [s for s in segments if not s.is_body]
    shown = dom.find("p", "skipped")
    assert [(n.attrs["data-reason"], n.child("text").text()) for n in shown] == [(s.reason, s.text) for s in skipped]
    assert all(f"skipped: {s.reason}" in n.text() for n, s in zip(shown, skipped))
    counts = {n.attrs["data-label"]: int(n.find(cls="count")[0].text()) for n in dom.find("li", "legend-item")}
    predicted = Counter(p.label for p in predictions)
    assert {label: counts[label] for label in LABELS} == {label: predicted[label] for label in LABELS}
    assert counts["unsure"] == sum(max(p.scores.values()) < 0.5 for p in predictions)
    assert counts["skipped"] == len(skipped)
    # the article as written: headline, then standfirst, then the paragraphs
    assert dom.find("h1")[0].find("mark")[0].child("text").text() == segments[0].text
    assert dom.find("p", "standfirst")[0].find("mark")[0].attrs["data-id"] == segments[1].id
    return {label: predicted[label] for label in LABELS}


@pytest.fixture
def page(tmp_path, tiny_baseline_dir, capsys) -> Path:
    out = tmp_path / "report.html"
    assert main(["report", str(SEED_ARTICLE), "-o", str(out), "--model", str(tiny_baseline_dir)]) == 0
    assert capsys.readouterr().out == f"wrote {out}\n"
    return out


def test_report_shows_every_sentence_once_in_its_act_with_probabilities(page, tiny_baseline_dir):
    check_page(parse(page.read_text(encoding="utf-8")), tiny_baseline_dir)


def test_report_fetches_nothing(page):
    html = page.read_text(encoding="utf-8")
    dom = parse(html)
    assert not [n for n in dom.iter() if {"src", "href", "srcset", "action"} & set(n.attrs)]
    assert not dom.find("script") and "url(" not in html and "@import" not in html
    (csp,) = [n for n in dom.find("meta") if n.attrs.get("http-equiv") == "Content-Security-Policy"]
    assert csp.attrs["content"].startswith("default-src 'none'")


def test_min_confidence_decides_which_sentences_are_unsure(tmp_path, tiny_baseline_dir):
    out = tmp_path / "all-unsure.html"
    assert main(["report", str(SEED_ARTICLE), "-o", str(out), "--model", str(tiny_baseline_dir),
                 "--min-confidence", "1"]) == 0
    marks = parse(out.read_text(encoding="utf-8")).find("mark", "s")
    assert len(marks) == 24 and all("unsure" in m.classes for m in marks)


def test_palette_is_distinct_and_each_act_has_its_own_pattern():
    assert len({colour for colour, _, _ in STYLES.values()}) == len(LABELS) == len(STYLES)
    assert len({pattern for _, _, pattern in STYLES.values()}) == len(LABELS)


@pytest.mark.parametrize("args, message", [
    (["--min-confidence", "1.5"], "--min-confidence must be a probability between 0 and 1, got 1.5"),
    (["--model", "no/such/model"], "no/such/model: model directory not found"),
])
def test_bad_report_options(tmp_path, tiny_baseline_dir, capsys, args, message):
    assert main(["report", str(SEED_ARTICLE), "-o", str(tmp_path / "x.html"), "--model", str(tiny_baseline_dir),
                 *args]) == 2
    assert capsys.readouterr().err == f"error: {message}\n"
    assert not (tmp_path / "x.html").exists()


def test_report_of_a_missing_article(tmp_path, capsys):
    assert main(["report", "nowhere.txt", "-o", str(tmp_path / "x.html")]) == 2
    assert capsys.readouterr().err == "error: nowhere.txt: article not found\n"


def chromium(tmp_path: Path, *args: str) -> str:
    result = subprocess.run([CHROMIUM, *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'chromium-profile'}", *args],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install chromium; .ci/run installs it)")
def test_report_in_a_real_browser(page, tmp_path, tiny_baseline_dir):
    """Chromium renders the page: its DOM passes the checks, and a full-page screenshot shows each act's colour."""
    import matplotlib.image

    counts = check_page(parse(chromium(tmp_path, "--dump-dom", page.as_uri())), tiny_baseline_dir)
    screenshot = tmp_path / "report.png"
    chromium(tmp_path, "--window-size=1000,4200", f"--screenshot={screenshot}", page.as_uri())
    if os.environ.get("TEST_ARTIFACTS_DIR"):
        Path(os.environ["TEST_ARTIFACTS_DIR"]).mkdir(parents=True, exist_ok=True)
        shutil.copy(screenshot, Path(os.environ["TEST_ARTIFACTS_DIR"]) / "report.png")
    pixels = (matplotlib.image.imread(screenshot)[:, :, :3] * 255).round().astype(int)
    for label, (_, tint, _) in STYLES.items():  # the legend's swatch paints ~500 pixels; one sentence, thousands
        rgb = np.array([int(tint[i:i + 2], 16) for i in (1, 3, 5)])
        painted = int((np.abs(pixels - rgb).sum(axis=2) <= 6).sum())
        assert (painted > 2000) == (counts[label] > 0), (label, painted, counts[label])
