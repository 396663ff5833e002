import io
import json
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import mlflow
import pytest

from conftest import ROOT, SEED_ARTICLE, SEED_NAME, SENTENCES, read_rows, tiny_model, train_and_register
from speechacts import load_classifier
from speechacts.cli import main

SPEECHACTS = Path(sys.executable).parent / "speechacts"


@pytest.fixture(scope="module")
def registered(tmp_path_factory):
    return train_and_register(tmp_path_factory.mktemp("registered"))


def predict(capsys, *args: str) -> tuple[int, str, str]:
    """Run `speechacts predict ARGS` in process; returns the exit code, stdout and stderr."""
    code = main(["predict", *args])
    out, err = capsys.readouterr()
    return code, out, err


def records(out: str) -> list[dict]:
    return [json.loads(line) for line in out.splitlines()]


class Stdin(io.TextIOWrapper):
    """Standard input holding bytes, on a terminal or not."""

    def __init__(self, data: bytes, tty: bool = False):
        super().__init__(io.BytesIO(data), encoding="utf-8")
        self.tty = tty

    def isatty(self) -> bool:
        return self.tty


def test_sentences_as_arguments_give_one_json_object_each_in_a_pipe(registered, capsys):
    code, out, err = predict(capsys, "--model", str(registered.model_dir), *SENTENCES)
    assert code == 0 and err == ""
    expected = load_classifier(registered.model_dir).predict(SENTENCES)
    got = records(out)
    assert [set(r) for r in got] == [{"text", "label", "scores", "unsure"}] * 3
    assert [(r["text"], r["label"]) for r in got] == [(p.text, p.label) for p in expected]
    assert got[0]["scores"] == {label: round(value, 6) for label, value in expected[0].scores.items()}


def test_table_format(registered, capsys):
    code, out, _ = predict(capsys, "--model", str(registered.model_dir), "--format", "table", *SENTENCES[:2])
    lines = out.splitlines()
    assert code == 0 and lines[0].split() == ["#", "label", "threat", "demand", "denial", "offer", "assess", "text"]
    assert lines[2].split()[0] == "1" and lines[2].endswith(SENTENCES[0]) and lines[3].split()[0] == "2"


def test_article_file_labels_its_body_sentences_with_positions(registered, capsys):
    code, out, err = predict(capsys, "--model", str(registered.model_dir), "--file", str(SEED_ARTICLE))
    labelled = [row["id"] for row in read_rows(ROOT / "data" / "seed_labels.csv") if row["source"] == SEED_NAME]
    assert code == 0 and [f"{SEED_NAME}:{r['position']:03d}" for r in records(out)] == labelled
    assert ("note: left out 5 line(s) that are not body sentences: 3 (photo title), 4 (photo caption), "
            "13 (section heading), 23 (section heading), 29 (source line)") in err


def test_lines_file_and_standard_input(registered, capsys, monkeypatch, tmp_path):
    (tmp_path / "lines.txt").write_text(f"{SENTENCES[0]}\n\n  {SENTENCES[1]}  \n", encoding="utf-8")
    code, out, _ = predict(capsys, "-m", str(registered.model_dir), "--file", str(tmp_path / "lines.txt"), "--lines")
    assert code == 0 and [r["text"] for r in records(out)] == SENTENCES[:2]
    monkeypatch.setattr(sys, "stdin", Stdin(f"{SENTENCES[0]}\n{SENTENCES[1]}\n".encode()))
    code, out, _ = predict(capsys, "-m", str(registered.model_dir), "--lines")
    assert code == 0 and [r["text"] for r in records(out)] == SENTENCES[:2]
    for explicit in ([], ["--file", "-"]):
        monkeypatch.setattr(sys, "stdin", Stdin(SEED_ARTICLE.read_bytes()))
        code, out, _ = predict(capsys, "-m", str(registered.model_dir), *explicit)
        assert code == 0 and [r["kind"] for r in records(out)][:2] == ["headline", "standfirst"]


def test_default_model_is_the_champion_of_the_store_in_the_environment(registered, capsys, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", registered.store)
    code, out, _ = predict(capsys, SENTENCES[0])
    assert code == 0 and records(out)[0]["label"] == load_classifier(registered.model_dir).predict(SENTENCES[:1])[0].label


def test_a_real_pipe_gets_json_lines(registered):
    out = subprocess.run([str(SPEECHACTS), "predict", "--model", str(registered.model_dir), "--lines"],
                         input=f"{SENTENCES[0]}\n{SENTENCES[1]}\n", capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert [r["text"] for r in records(out.stdout)] == SENTENCES[:2]


def test_a_real_process_reports_a_mistake_in_one_line(tmp_path):
    out = subprocess.run([str(SPEECHACTS), "predict", "--model", str(tmp_path / "nope"), "Talks resume."],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and out.stdout == ""
    assert out.stderr == f"error: {tmp_path / 'nope'}: model directory not found\n"


BAD_INPUTS = [
    (["--model", "{model}", ""], "sentence 1 is empty or only whitespace; give every sentence some text"),
    (["--model", "{model}", "Talks resume.", " \t"], "sentence 2 is empty or only whitespace"),
    (["--model", "{model}", "--file", "{tmp}/empty.txt"], "empty.txt: empty, nothing to label"),
    (["--model", "{model}", "--file", "{tmp}/blank.txt", "--lines"], "blank.txt: empty, nothing to label"),
    (["--model", "{model}", "--file", "{tmp}/latin1.txt"], "latin1.txt line 1: not UTF-8 (byte 0xe9 at offset 9); save it "
                                                            "as UTF-8"),
    (["--model", "{model}", "--file", "{tmp}/missing.txt"], "missing.txt: file not found"),
    (["--model", "{model}", "--file", "{tmp}/empty.txt", "Talks resume."], "give sentences as arguments or --file, "
                                                                           "not both"),
    (["--model", "{tmp}/no-model", "Talks resume."], "no-model: model directory not found"),
    (["--model", "{tmp}/old-model", "Talks resume."], "saved with model format 0 by speechacts 0.0.1; this "
                                                      "speechacts reads format 1"),
    (["--model", "models:/speechacts-classifier@nope", "--tracking-uri", "{store}", "Talks resume."],
     "registered model 'speechacts-classifier' has no alias 'nope' in tracking store"),
    (["--tracking-uri", "sqlite:///{tmp}/empty.db", "Talks resume."],
     "no registered model 'speechacts-classifier' in tracking store sqlite:///{tmp}/empty.db (it has no registered "
     "models); train and register a model with `speechacts experiment experiments/default.yaml`"),
    (["--tracking-uri", "sqlite:///{tmp}/missing.db", "Talks resume."], "tracking store sqlite:///{tmp}/missing.db not "
                                                                        "found"),
]


@pytest.fixture(scope="module")
def bad_files(registered, tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("bad")
    (tmp_path / "empty.txt").write_bytes(b"")
    (tmp_path / "blank.txt").write_text(" \n\n\t\n")
    (tmp_path / "latin1.txt").write_bytes("Sherman: \u00e9t\u00e9 tense talks.".encode("latin-1"))
    old = shutil.copytree(registered.model_dir, tmp_path / "old-model")
    meta = json.loads((old / "speechacts.json").read_text())
    meta["format_version"], meta["versions"]["speechacts"] = 0, "0.0.1"
    (old / "speechacts.json").write_text(json.dumps(meta))
    mlflow.MlflowClient(f"sqlite:///{tmp_path}/empty.db").search_experiments()
    return {"model": str(registered.model_dir), "tmp": str(tmp_path), "store": registered.store}


@pytest.mark.parametrize("args, message", BAD_INPUTS, ids=[m[:40] for _, m in BAD_INPUTS])
def test_bad_input_is_one_error_line_and_exit_2(bad_files, capsys, args, message):
    code, out, err = predict(capsys, *[a.format(**bad_files) for a in args])
    assert code == 2 and out == ""
    assert err.startswith("error: ") and message.format(**bad_files) in err and "Traceback" not in err


@pytest.mark.parametrize("data, tty, message", [
    (b"", False, "standard input: empty, nothing to label"),
    (b"Talks \xff resume.", False, "standard input line 1: not UTF-8 (byte 0xff at offset 6); save it as UTF-8"),
    (b"", True, "nothing to label: give sentences as arguments, --file PATH, or pipe text to standard input"),
])
def test_bad_standard_input(registered, capsys, monkeypatch, data, tty, message):
    monkeypatch.setattr(sys, "stdin", Stdin(data, tty))
    code, out, err = predict(capsys, "--model", str(registered.model_dir))
    assert code == 2 and out == "" and err == f"error: {message}\n"


@pytest.mark.slow
def test_a_sentence_longer_than_the_transformer_maximum_is_truncated_with_a_one_line_warning(tmp_path, capsys):
    model, config = tiny_model("transformer")  # max_length 32 tokens
    model_dir = model.save(tmp_path / "transformer", config=config)
    long = "Russia warned that " + ", ".join(f"sanctions on sector {i}" for i in range(20)) + " would bring a response."
    code, out, err = predict(capsys, "--model", str(model_dir), long, SENTENCES[0])
    assert code == 0 and [r["text"] for r in records(out)] == [long, SENTENCES[0]]
    warning_lines = [line for line in err.splitlines() if line.startswith("warning:")]
    assert len(warning_lines) == 1 and "truncated" in warning_lines[0] and "maximum of 32 tokens" in warning_lines[0]
    assert "Traceback" not in err and "warnings.warn" not in err


def test_lines_are_labelled_in_batches_with_one_table(registered, capsys, monkeypatch, tmp_path):
    from speechacts import predict as predict_job

    monkeypatch.setattr(predict_job, "BATCH_SIZE", 2)
    lines = [f"Talks will resume in round {i}." for i in range(5)]
    (tmp_path / "lines.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    code, out, _ = predict(capsys, "-m", str(registered.model_dir), "--file", str(tmp_path / "lines.txt"), "--lines",
                           "--format", "table")
    rows = out.splitlines()
    assert code == 0 and rows[0].split()[0] == "#" and sum(r.split()[0] == "#" for r in rows) == 1
    assert [r.split()[0] for r in rows[2:]] == ["1", "2", "3", "4", "5"] and rows[-1].endswith(lines[-1])


def test_a_bad_byte_in_lines_names_its_line(registered, capsys, monkeypatch):
    monkeypatch.setattr(sys, "stdin", Stdin(b"Talks resume.\nA second line.\nBad \xe9 byte.\n"))
    code, out, err = predict(capsys, "-m", str(registered.model_dir), "--lines")
    assert code == 2 and err == ("error: standard input line 3: not UTF-8 (byte 0xe9 at offset 33); save it as "
                                 "UTF-8\n")
    assert [r["text"] for r in records(out)] == ["Talks resume.", "A second line."]  # the batch before it


def test_a_real_pipe_gets_each_batch_before_the_input_ends(registered):
    from speechacts.predict import BATCH_SIZE

    process = subprocess.Popen([str(SPEECHACTS), "predict", "--model", str(registered.model_dir), "--lines"],
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    watchdog = threading.Timer(120, process.kill)  # a process that waits for more input fails the test, not hangs it
    watchdog.start()
    try:
        process.stdin.write("".join(f"Talks will resume in round {i}.\n" for i in range(BATCH_SIZE)))
        process.stdin.flush()
        first = [process.stdout.readline() for _ in range(BATCH_SIZE)]  # blocks until the batch is written
        assert process.poll() is None  # still reading: its input is open
        assert json.loads(first[-1])["text"] == f"Talks will resume in round {BATCH_SIZE - 1}."
        process.stdin.write("One more.\n")
        process.stdin.close()
        rest = process.stdout.read().splitlines()
        assert process.wait(timeout=60) == 0 and [json.loads(r)["text"] for r in rest] == ["One more."]
    finally:
        watchdog.cancel()
        process.kill()


@pytest.mark.parametrize("terminal", [True, False])
def test_a_progress_bar_goes_to_standard_error_only_on_a_terminal(registered, tmp_path, terminal):
    import fcntl
    import os
    import pty
    import struct
    import termios

    (tmp_path / "lines.txt").write_text("".join(f"Talks resume, round {i}.\n" for i in range(1500)))
    leader, follower = pty.openpty() if terminal else (None, subprocess.PIPE)
    if terminal:  # a terminal 100 columns wide (a new pseudo-terminal has none, and tqdm would draw nothing)
        fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))
    process = subprocess.Popen([str(SPEECHACTS), "predict", "--model", str(registered.model_dir), "--lines",
                                "--file", str(tmp_path / "lines.txt")], stdout=subprocess.PIPE, stderr=follower)
    chunks = []
    if terminal:
        os.close(follower)

        def read_terminal():
            while True:
                try:
                    chunk = os.read(leader, 4096)
                except OSError:  # the terminal closed with the process
                    return
                if not chunk:
                    return
                chunks.append(chunk)

        reader = threading.Thread(target=read_terminal)
        reader.start()
    out = process.stdout.read()
    assert process.wait(timeout=60) == 0 and len(out.splitlines()) == 1500
    if terminal:
        reader.join(timeout=10)
        err = b"".join(chunks).decode()
    else:
        err = process.stderr.read().decode()
    assert ("sentences" in err) == terminal, err


@pytest.mark.slow
def test_memory_stays_flat_however_many_lines(registered, tmp_path):
    def peak_rss_mib(lines: int) -> float:
        path = tmp_path / f"{lines}.txt"
        path.write_text("".join(f"Officials said round {i} of the talks on tariffs would resume.\n"
                                for i in range(lines)))
        wrapper = ("import resource, subprocess, sys\n"
                   "done = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL)\n"
                   "assert done.returncode == 0\n"
                   "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024)")
        out = subprocess.run([sys.executable, "-c", wrapper, str(SPEECHACTS), "predict", "--model",
                              str(registered.model_dir), "--lines", "--file", str(path)],
                             capture_output=True, text=True, timeout=600)
        assert out.returncode == 0, out.stderr
        return float(out.stdout)

    small, large = peak_rss_mib(5_000), peak_rss_mib(50_000)
    assert large < small * 1.15, (small, large)


def test_min_confidence_on_the_command_line(tiny_baseline_dir, capsys):
    assert main(["predict", "--model", str(tiny_baseline_dir), "--format", "jsonl", "--min-confidence", "0.999",
                 "Talks resume."]) == 0
    assert json.loads(capsys.readouterr().out)["unsure"] is True
    assert main(["predict", "--model", str(tiny_baseline_dir), "--min-confidence", "7", "Talks resume."]) == 2
    assert "error: min_confidence must be a probability between 0 and 1, got 7.0" in capsys.readouterr().err
