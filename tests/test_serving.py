"""`mlflow models serve` on the registered champion answers /invocations with labels and probabilities."""

import json
import urllib.error
import urllib.request

import pytest

from conftest import SENTENCES, model_server, train_and_register
from speechacts import load_classifier
from speechacts.labels import LABELS

pytestmark = pytest.mark.slow


def post(url: str, body: dict) -> tuple[int, dict]:
    request = urllib.request.Request(url, json.dumps(body).encode(), {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """The champion of a fresh store behind `mlflow models serve` on a free loopback port; always stopped."""
    registered = train_and_register(tmp_path_factory.mktemp("served"))
    try:
        with model_server("models:/speechacts-classifier@champion", registered.store,
                          registered.model_dir.parent / "server.log") as url:
            yield url, registered
    except RuntimeError as exc:
        pytest.fail(str(exc))


def test_invocations_answer_labels_and_probabilities_like_the_python_api(served):
    url, registered = served
    status, body = post(url + "/invocations", {"dataframe_split": {"columns": ["text"],
                                                                   "data": [[s] for s in SENTENCES]}})
    assert status == 200
    expected = load_classifier(registered.model_dir).predict(SENTENCES)
    rows = body["predictions"]
    assert [set(row) for row in rows] == [{"label", *LABELS, "unsure"}] * len(SENTENCES)
    assert [row["label"] for row in rows] == [p.label for p in expected]
    assert not any(row["unsure"] for row in rows)
    for row, p in zip(rows, expected):
        assert [row[label] for label in LABELS] == pytest.approx([p.scores[label] for label in LABELS], abs=1e-9)


def test_min_confidence_is_a_parameter_of_the_request(served):
    url, _ = served
    status, body = post(url + "/invocations", {"dataframe_split": {"columns": ["text"], "data": [[SENTENCES[0]]]},
                                               "params": {"min_confidence": 0.999}})
    assert status == 200 and body["predictions"][0]["unsure"] is True
    status, body = post(url + "/invocations", {"inputs": [SENTENCES[0]], "params": {"min_confidence": 3}})
    assert status == 400 and "min_confidence must be a probability between 0 and 1" in json.dumps(body)
    assert "stack_trace" not in body


def test_invocations_take_a_plain_list_of_sentences(served):
    url, _ = served
    status, body = post(url + "/invocations", {"inputs": SENTENCES[:2]})
    assert status == 200 and len(body["predictions"]) == 2


def test_an_empty_sentence_is_a_bad_request_with_a_message(served):
    url, _ = served
    status, body = post(url + "/invocations", {"inputs": ["Talks resume.", " "]})
    assert status == 400 and "empty" in json.dumps(body)


BAD_BODIES = [
    ({"inputs": [None]}, "sentence 1 is missing (null)"),
    ({"inputs": [1]}, "sentence 1 is int 1, not a string"),
    ({"inputs": [True]}, "sentence 1 is bool True, not a string"),
    ({"inputs": [2.5, -1]}, "sentence 1 is float 2.5, not a string"),
    ({"dataframe_split": {"columns": ["text"], "data": [["Talks resume."], [2.5]]}}, "sentence 2 is float 2.5, not a "
                                                                                    "string"),
    ({"dataframe_records": [{"text": "Talks resume."}, {"text": False}]}, "sentence 2 is bool False, not a string"),
    ({"inputs": ["Talks resume.", None]}, "sentence 2 is missing (null)"),
    ({"inputs": []}, "no texts to label"),
    ({"inputs": [""]}, "sentence 1 is empty or only whitespace"),
    ({"inputs": [["nested"]]}, "got a 2-dimensional array"),
    ({"inputs": [{"text": "a dict"}]}, "sentence 1 is dict"),
    ({"inputs": {"text": [7]}}, "sentence 1 is int 7, not a string"),
    ({"inputs": {"sentence": ["x"]}}, "expected sentences: a 'text' column, a list of strings or {\"text\": [...]}"),
    ({"dataframe_split": {"columns": ["text"], "data": [[None]]}}, "sentence 1 is missing (null)"),
    ({"dataframe_split": {"columns": ["text"], "data": [[3.5]]}}, "sentence 1 is float 3.5, not a string"),
    ({"dataframe_records": [{"text": "Talks resume."}, {"text": None}]}, "sentence 2 is missing (null)"),
    ({"dataframe_split": {"columns": ["a", "b"], "data": [["x", "y"]]}}, "expected a 'text' column, got columns"),
]


@pytest.mark.parametrize("body, message", BAD_BODIES, ids=[json.dumps(b)[:40] for b, _ in BAD_BODIES])
def test_anything_but_non_empty_strings_is_a_400_with_a_short_message_and_no_stack_trace(served, body, message):
    url, _ = served
    status, answer = post(url + "/invocations", body)
    assert status == 400 and answer["error_code"] == "INVALID_PARAMETER_VALUE"
    assert message in answer["message"] and len(answer["message"]) < 400
    assert "stack_trace" not in answer and "Traceback" not in json.dumps(answer)
