"""The shortcut check: associated words per label, and the keyword-only classifier."""

from speechacts import shortcuts
from speechacts.cli import main

# A corpus where "if" gives threats away and "offered" gives offers away (each label differs
# from the others by one word), and article sentences where neither cue holds.
ISOLATED = ([(f"if the group moves on day {i} there will be a response", "threat") for i in range(8)]
            + [(f"the group moves on day {i} and there will be a response", "assessment") for i in range(8)]
            + [(f"the ministry {verb} a deal on day {i}", label) for i in range(8)
               for verb, label in (("offered", "offer"), ("demanded", "demand"), ("denied", "denial"))])
ARTICLE = ([(f"if the rain comes on day {i} there will be a harvest", "assessment") for i in range(6)]
           + [(f"analysts said the offered deal on day {i} was modest", "assessment") for i in range(6)]
           + [(f"the ministry demanded a deal on day {i}", "demand") for i in range(2)])


def test_the_words_that_give_a_label_away_are_found():
    words = shortcuts.associated([t for t, _ in ISOLATED], [y for _, y in ISOLATED])
    assert "if" in [w for w, _ in words["threat"]]
    assert "offered" in [w for w, _ in words["offer"]]
    assert all(score > 0 for pairs in words.values() for _, score in pairs)
    assert "if" not in [w for w, _ in words["assessment"]]  # only positive associations


def test_keyword_classifier_is_right_on_its_own_corpus_and_wrong_where_the_cues_mislead():
    rep = shortcuts.report(ISOLATED, ARTICLE)
    assert rep.keyword_accuracy["isolated"] == 1.0
    assert rep.keyword_accuracy["article"] == 2 / 14  # only the two demands; "if" and "offered" mislead
    assert rep.metrics()["shortcut_keyword_accuracy_article"] == rep.keyword_accuracy["article"]
    assert shortcuts.keyword_predict(["Nothing here matches."], rep.keywords) == ["assessment"]
    card = "\n".join(shortcuts.markdown(rep))
    assert "| threat | if" in card and "| article | 0.143 |" in card


def test_prepare_prints_the_shortcut_check(project, capsys):
    assert main(["prepare"]) == 0
    out = capsys.readouterr().out
    assert "## Shortcut check" in out and "A keyword-only classifier" in out
    assert "| isolated (its keywords come from these) |" in out and "| article |" in out
