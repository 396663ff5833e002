"""The copy check: fingerprints of the sources read, and runs of five words shared with them."""

from pathlib import Path

from speechacts import copycheck
from speechacts.cli import main

SOURCE = "The river authority said the gates would stay shut until the autumn rains came."


def test_a_copied_run_is_found_and_a_name_is_not():
    prints = {"https://example.org/s": copycheck.fingerprint(SOURCE + " Deputy Minister Ana Lopez of Spain spoke.")}
    found = copycheck.copied_runs("Officials said the gates would stay shut for now.", prints)
    assert [run for run, _ in found] == ["said the gates would stay", "the gates would stay shut"]
    assert copycheck.copied_runs("Deputy Minister Ana Lopez of Spain spoke on Monday.", prints) == []
    assert copycheck.copied_runs("The gates, officials said, would stay shut.", prints) == []


def test_only_the_sources_an_article_names_count():
    prints = {"https://a.example": copycheck.fingerprint(SOURCE), "https://b.example": set()}
    text = "Officials said the gates would stay shut."
    assert copycheck.article_problems("x", text, ["https://b.example"], prints) == []
    assert copycheck.article_problems("x", text, ["https://a.example"], prints)[0].startswith(
        "x: copies 5 words from https://a.example: 'said the gates would stay'")
    assert copycheck.article_problems("x", text, [], prints) == [
        "x: its provenance line names no sources ('sources: URL ...')"]


def test_fingerprints_hold_hashes_not_text(tmp_path):
    excerpts = tmp_path / "excerpts"
    excerpts.mkdir()
    (excerpts / "a.txt").write_text(f"URL: https://example.org/s\n{SOURCE}\n", encoding="utf-8")
    written = copycheck.fingerprint_excerpts(excerpts, tmp_path / "sources")
    content = written[0].read_text(encoding="utf-8")
    assert content.startswith("# url: https://example.org/s\n") and "gates" not in content
    url, hashes = copycheck.read_fingerprint(written[0])
    assert url == "https://example.org/s" and hashes == copycheck.fingerprint(SOURCE)


def test_sources_command_checks_articles(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    Path("ex").mkdir()
    Path("ex/a.txt").write_text(f"URL: https://example.org/s\n{SOURCE}\n", encoding="utf-8")
    assert main(["sources", "fingerprint", "ex"]) == 0
    Path("art.txt").write_text("# dispute: d | outlet: wire | date: 2024-01-01 | sources: https://example.org/s\n"
                               "Head\nThey said the gates would stay shut.\n", encoding="utf-8")
    assert main(["sources", "check", "art.txt"]) == 1
    out = capsys.readouterr().out
    assert "art: copies 5 words from https://example.org/s: 'said the gates would stay'" in out
    assert "1 article(s) checked against 1 source(s): 2 problem(s)" in out


def test_an_excerpt_without_its_url_is_refused(tmp_path, capsys):
    (tmp_path / "a.txt").write_text("no url line\ntext\n", encoding="utf-8")
    assert main(["sources", "fingerprint", str(tmp_path)]) == 2
    assert "a.txt: an excerpt file must start with a line 'URL: <address>'" in capsys.readouterr().err
