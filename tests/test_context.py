"""Context: what a model reads beside a sentence, built from its article."""

import pytest

from speechacts import context
from speechacts.config import DataConfig
from speechacts.data import validate
from speechacts.segment import segment_article

ARTICLE = ("Capital offers talks\n"
           "The ministry said it was ready.\n"
           "Photo title\n"
           "A man walks by a fence [Jane Doe/Agency]\n"
           "\"We are ready,\" she said. \"But not under pressure.\"\n")


def test_previous_sentence_and_headline_skip_left_out_lines():
    segments = segment_article(ARTICLE, "a")
    around = context.article_contexts(segments)
    assert around["a:001"] == ("", "")  # the headline has neither
    assert around["a:002"] == ("Capital offers talks", "Capital offers talks")
    assert around["a:005"] == ("The ministry said it was ready.", "Capital offers talks")  # caption skipped
    assert around["a:006"] == ('"We are ready," she said.', "Capital offers talks")
    assert "a:003" not in around and "a:004" not in around


@pytest.mark.parametrize("kind, expected", [
    ("none", ""), ("previous", "before"), ("headline+previous", "head | before")])
def test_compose(kind, expected):
    assert context.compose(kind, "before", "head") == expected


def test_compose_refuses_an_unknown_kind():
    with pytest.raises(ValueError, match="unknown context 'next'; expected one of none, previous, headline"):
        context.compose("next", "", "")


def test_training_rows_carry_their_article_context_and_isolated_rows_none(project):
    corpus = validate(DataConfig())
    rows = {r.id: r for r in corpus.train}
    assert rows["fx-river-gates:005"].previous == '"We have been patient for three seasons," the minister said.'
    assert rows["fx-river-gates:005"].headline == "Upstream state warns of penalties over canal diversions"
    isolated = next(r for r in corpus.train if not r.in_article)
    assert context.for_rows("previous", [isolated]) == [""]
    assert context.for_rows("none", [isolated]) is None
    seed = {r.id: r for r in corpus.test}
    assert seed["2022-01-10-aljazeera-us-russia-geneva-talks:005"].previous.startswith("Russia and US discuss")
