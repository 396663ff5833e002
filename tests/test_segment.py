import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from speechacts.errors import DataError
from speechacts.segment import read_article, segment_article, segment_seeds, split_sentences

ROOT = Path(__file__).resolve().parents[1]
SEED = "2022-01-10-aljazeera-us-russia-geneva-talks"

# The seed article, segment by segment: (index, kind, reason left out, text).
PINNED = [
    (1, 'headline', None, 'US and Russia still at odds after talks over Ukraine tensions'),
    (2, 'standfirst', None, 'Russia and US discuss Ukraine frictions and European security at talks in Geneva with no sign the two sides had narrowed their differences.'),
    (3, 'excluded', 'photo title', 'US Russia talks in Geneva'),
    (4, 'excluded', 'photo caption', 'US Deputy Secretary of State Wendy Sherman and Russian Deputy Foreign Minister Sergei Ryabkov attend security talks at the United States Mission in Geneva, Switzerland [Denis Balibouse/Reuters]'),
    (5, 'body', None, 'Russia and the United States gave no sign that they had narrowed their differences on Ukraine and wider European security in talks in Geneva, as Moscow repeated demands that Washington says it cannot accept.'),
    (6, 'body', None, 'Russia has massed troops near Ukraine’s border while demanding that the US-led NATO alliance rule out admitting the former Soviet state or expanding further into what Moscow sees as its back yard.'),
    (7, 'body', None, '“Unfortunately we have a great disparity in our principled approaches to this.'),
    (8, 'body', None, 'The US and Russia in some ways have opposite views on what needs to be done,” Russian Deputy Foreign Minister Sergei Ryabkov told reporters.'),
    (9, 'body', None, 'Talks lasted for more than seven hours in Geneva on Monday.'),
    (10, 'body', None, 'Ryabkov said Russian officials “had the impression that the American side took Russian proposals very seriously”.'),
    (11, 'body', None, 'Deputy US Secretary of State Wendy Sherman said: “We were firm … in pushing back on security proposals that are simply non-starters to the United States.”'),
    (12, 'body', None, 'Sherman told reporters she had offered “a number of ideas where our two countries could take reciprocal action that would be in our security interest and improve strategic stability”.'),
    (13, 'excluded', 'section heading', 'US warning over invasion'),
    (14, 'body', None, 'Washington and Kyiv say the 100,000 Russian troops moved to striking distance could be preparing a new invasion, eight years after Russia seized the Crimean Peninsula from Ukraine.'),
    (15, 'body', None, 'If Russia invades, “there will be significant costs and consequences, well beyond what they faced in 2014”, Sherman said.'),
    (16, 'body', None, 'Russia denies any such plans and says it is responding to what it calls aggressive behaviour from NATO and Ukraine, which has tilted toward the West and aspires to join the alliance.'),
    (17, 'body', None, 'Ryabkov denounced US threats of action against Russia as “attempts at blackmail and intimidation”, but said Moscow was “for the continuation of dialogue”.'),
    (18, 'body', None, '“I don’t think the situation is hopeless,” he said.'),
    (19, 'body', None, 'Ryabkov also repeated a set of sweeping demands including a ban on further NATO expansion and an end to the alliance’s activity in the central and eastern European countries that joined it after 1997.'),
    (20, 'body', None, 'He said it was absolutely “mandatory” for Russia to ensure that Ukraine never became a NATO member.'),
    (21, 'body', None, 'Sherman said: “We will not allow anyone to slam closed NATO’s open-door policy, which has always been central to the NATO alliance.”'),
    (22, 'body', None, '“We will not forego bilateral cooperation with sovereign states that wish to work with the United States, and we will not make decisions about Ukraine without Ukraine, about Europe without Europe, or about NATO without NATO.”'),
    (23, 'excluded', 'section heading', 'Russian ‘goals’'),
    (24, 'body', None, 'Petro Burkovskiy, a senior fellow at the Democratic Initiatives Foundation, said Russia had three “goals” in Monday’s negotiations.'),
    (25, 'body', None, 'Among these goals is to “undermine trust in the United States among the European countries”, and to show “defiance of any future sanctions,” Burkovskiy told Al Jazeera.'),
    (26, 'body', None, 'Russia also wanted to “demonstrate if sanctions are implemented, that it will retaliate selectively” through European nations – like Germany or Italy “reducing or cutting off gas supplies”, he said.'),
    (27, 'body', None, 'But the most important goal right now for Russia is to “discourage the United States from arming central European nations that joined NATO,” Burkovskiy added.'),
    (28, 'body', None, '“This message was made today very clearly.”'),
    (29, 'excluded', 'source line', 'Source: Al Jazeera and news agencies'),
]


def test_seed_article_segmentation_is_pinned_sentence_by_sentence():
    segments = segment_seeds(ROOT / "seeds")[SEED]
    assert [(s.index, s.kind, s.reason, s.text) for s in segments] == PINNED
    assert segments[0].id == f"{SEED}:001"


IDS_SCRIPT = """
import json, sys
from pathlib import Path
from speechacts.segment import segment_seeds
print(json.dumps({name: [s.id for s in segs] for name, segs in segment_seeds(Path(sys.argv[1])).items()}))
"""


def test_ids_are_stable_across_runs():
    # other processes with other string hash seeds (what would change a set's or a hash's order) give the same ids
    here = {name: [s.id for s in segs] for name, segs in segment_seeds(ROOT / "seeds").items()}
    for hash_seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": hash_seed,
               "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
        out = subprocess.run([sys.executable, "-c", IDS_SCRIPT, str(ROOT / "seeds")], env=env, capture_output=True,
                             text=True, check=True).stdout
        assert json.loads(out) == here


@pytest.mark.parametrize("paragraph, expected", [
    # a quotation holding two sentences becomes two; the attribution stays with the quote
    ("“We will not move. They must leave first,” the general said.",
     ["“We will not move.", "They must leave first,” the general said."]),
    ('"It is over. We lost," he said. Then he left.',
     ['"It is over.', 'We lost," he said.', "Then he left."]),
    # abbreviations do not break sentences
    ("The U.S. envoy met Dr. Amal Haddad on Jan. 5 in Washington. Talks resume today.",
     ["The U.S. envoy met Dr. Amal Haddad on Jan. 5 in Washington.", "Talks resume today."]),
    # curly quotes inside a sentence, an ellipsis, a quoted word
    ("She said: “We were firm … in pushing back.”", ["She said: “We were firm … in pushing back.”"]),
    ("Officials called the plan “mandatory” for all sides.", ["Officials called the plan “mandatory” for all sides."]),
])
def test_split_sentences(paragraph, expected):
    assert split_sentences(paragraph) == expected


def test_a_second_article_goes_through_the_same_path(tmp_path):
    (tmp_path / "2023-05-02-wire-fisheries.txt").write_text(
        "Fishing talks stall in Brussels\n\n"
        "Negotiators failed to agree quotas on Tuesday.\n\n"
        "Trawlers in port [Jane Roe/AFP]\n\n"
        "Quota row\n\n"
        "“We will not accept cuts. Our fleets are small,” the minister said. Talks resume Friday.\n\n"
        "Source: news agencies\n", encoding="utf-8")
    segments = segment_seeds(tmp_path)["2023-05-02-wire-fisheries"]
    assert [(s.kind, s.reason) for s in segments] == [
        ("headline", None), ("standfirst", None), ("excluded", "photo caption"), ("excluded", "section heading"),
        ("body", None), ("body", None), ("body", None), ("excluded", "source line")]
    assert segments[4].text == "“We will not accept cuts."
    assert segments[5].text == "Our fleets are small,” the minister said."


def test_photo_title_before_a_caption_is_left_out():
    segments = segment_article("Headline here\nStandfirst sentence.\nPort at dawn\nShips wait (AP Photo/J. Doe)\n", "x")
    assert [(s.text, s.reason) for s in segments if not s.is_body] == [
        ("Port at dawn", "photo title"), ("Ships wait (AP Photo/J. Doe)", "photo caption")]


def test_article_that_is_not_utf8(tmp_path):
    path = tmp_path / "latin1.txt"
    path.write_bytes("Caf\xe9 talks".encode("latin-1"))
    with pytest.raises(DataError, match=r"latin1.txt line 1: not UTF-8 \(byte 0xe9 at offset 3\)"):
        read_article(path)


def test_empty_article(tmp_path):
    path = tmp_path / "empty.txt"
    path.write_text("  \n\n", encoding="utf-8")
    with pytest.raises(DataError, match="empty.txt: the article is empty"):
        read_article(path)


def test_seeds_folder_without_articles(tmp_path):
    with pytest.raises(DataError, match="no seed articles"):
        segment_seeds(tmp_path)
