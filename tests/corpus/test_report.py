"""report.json round-trips, names every requested language, and report.md shows what it holds."""

from __future__ import annotations

import base64
from datetime import datetime, timezone

import pytest
from pydantic import ValidationError

from tasks.corpus import report as report_module
from tasks.corpus.counting import PartialCounts, count_batch
from tasks.corpus.languages import LanguageCode
from tasks.corpus.report import (
    DEFINITIONS_URL,
    LISTED_DOCUMENTS,
    CorpusReport,
    build_report,
    render_artifact_markdown,
    render_markdown,
)
from tasks.engine.models import ItemFailure
from tasks.errors import InvalidParameterError

GENERATED_AT = datetime(2026, 3, 2, 6, 0, tzinfo=timezone.utc)
UNASSIGNED = [ItemFailure(item_id="misc/notes.txt", reason="'misc/notes.txt' is not inside a language folder")]
SKIPPED = [ItemFailure(item_id="fr/scan.pdf", reason="fr/scan.pdf: binary (a NUL byte in its first 8192 bytes)")]


def small_counts() -> dict[LanguageCode, PartialCounts]:
    """French, English and Sanskrit (IAST) in a few hand-made sentences; no German."""
    return {
        "fr": count_batch([[["le", "chat", "dort"], ["le", "chien", "dort", "aussi"]], [["le", "chat"]]], "cpu"),
        "en": count_batch([[["the", "cat", "sleeps"], ["the", "dog", "sleeps", "too"]]], "cpu"),
        "sa": count_batch([[["dharmakṣetre", "kurukṣetre", "samavetā", "yuyutsavaḥ"]]], "cpu"),
    }


def small_report(languages: tuple[LanguageCode, ...] = ("fr", "en", "sa", "de")) -> CorpusReport:
    """The small counts for the requested languages, with one unassigned and one skipped document."""
    return build_report("week-10", languages, small_counts(), UNASSIGNED, SKIPPED, 3, 2, GENERATED_AT)


def test_report_json_round_trips() -> None:
    """model_dump_json then model_validate_json gives the same report, plots and all."""
    report = small_report().model_copy(update={"plots": ["zipf-rank-frequency.png"]})
    assert CorpusReport.model_validate_json(report.model_dump_json(indent=2)) == report


def test_every_requested_language_is_reported_in_order_and_an_empty_one_with_zeros() -> None:
    """German has no documents: it is there, with 0 documents, tokens and types."""
    report = small_report()
    assert list(report.languages) == ["fr", "en", "sa", "de"]
    german = report.languages["de"]
    assert (german.documents, german.tokens, german.types, german.mattr) == (0, 0, 0, None)
    assert report.frequent_words["de"] == {}
    assert (report.languages["fr"].documents, report.languages["fr"].tokens) == (2, 9)


def test_documents_total_counts_counted_unassigned_and_skipped() -> None:
    """4 counted (2 fr, 1 en, 1 sa) + 1 unassigned + 1 skipped."""
    report = small_report()
    assert report.documents_total == 4 + 1 + 1
    assert (report.batches_run, report.batches_reused) == (3, 2)


def test_a_documents_total_that_does_not_add_up_is_refused() -> None:
    """The message names the total and its three parts."""
    data = small_report().model_dump()
    data["documents_total"] = 7
    expected = r"documents_total 7 should be the 4 counted \+ 1 unassigned \+ 1 skipped"
    with pytest.raises(ValidationError, match=expected):
        CorpusReport.model_validate(data)


def test_frequent_words_are_by_count_then_code_point_and_capped(monkeypatch: pytest.MonkeyPatch) -> None:
    """French with a cap of 3: le (3), then chat and dort (2 each); chien and aussi fall off."""
    monkeypatch.setattr(report_module, "FREQUENT_WORDS", 3)
    assert list(small_report().frequent_words["fr"].items()) == [("le", 3), ("chat", 2), ("dort", 2)]


def test_markdown_has_a_row_for_every_language_and_zeros_for_the_empty_one() -> None:
    """The summary table's rows, the definitions link, and "No documents." for German's n-grams."""
    markdown = render_markdown(small_report())
    assert "| fr (French) | 2 | 3 | 9 | 5 |" in markdown
    assert "| en (English) | 1 | 2 | 7 | 5 |" in markdown
    assert "| sa (Sanskrit) | 1 | 1 | 4 | 4 |" in markdown
    assert "| de (German) | 0 | 0 | 0 | 0 | 0 | – | 0 |" in markdown
    assert "### de (German)\n\nNo documents." in markdown
    assert f"[docs/corpus-analysis.md]({DEFINITIONS_URL})" in markdown
    assert "6 documents: 4 counted in the 4 requested languages, 1 unassigned, 1 skipped" in markdown


def test_markdown_lists_top_words_bigrams_and_trigrams() -> None:
    """French's first row: le 3, le chat 2, then three trigrams once each, the first in code-point order."""
    assert "| 1 | le | 3 | le chat | 2 | chien dort aussi | 1 |" in render_markdown(small_report())


def test_markdown_lists_unassigned_and_skipped_documents_with_reasons() -> None:
    """Each document by its path, with its reason."""
    markdown = render_markdown(small_report())
    assert "## Unassigned documents (1)" in markdown
    assert "- `misc/notes.txt`: 'misc/notes.txt' is not inside a language folder" in markdown
    assert "## Skipped documents (1)" in markdown
    assert "- `fr/scan.pdf`: binary (a NUL byte in its first 8192 bytes)" in markdown  # the id is not repeated


def test_a_long_list_of_documents_is_cut_in_markdown_but_whole_in_json() -> None:
    """Past LISTED_DOCUMENTS, report.md says how many more report.json holds."""
    many = [ItemFailure(item_id=f"x/{index}.txt", reason="too short") for index in range(LISTED_DOCUMENTS + 5)]
    report = build_report("week-10", ["fr"], small_counts(), many, [], 1, 0, GENERATED_AT)
    markdown = render_markdown(report)
    assert f"`x/{LISTED_DOCUMENTS - 1}.txt`" in markdown and f"`x/{LISTED_DOCUMENTS}.txt`" not in markdown
    assert "… and 5 more, listed in report.json." in markdown
    assert len(report.unassigned) == LISTED_DOCUMENTS + 5


def test_a_run_without_any_document_reports_zeros() -> None:
    """No counts at all: every language with zeros, no crash in the markdown."""
    report = build_report("empty", ["fr", "zh"], {}, [], [], 0, 0, GENERATED_AT)
    assert report.documents_total == 0
    markdown = render_markdown(report)
    assert "| zh (Chinese) | 0 | 0 | 0 | 0 |" in markdown
    assert "## Unassigned documents (0)\n\nNone." in markdown


def test_report_md_links_plots_by_file_name() -> None:
    """On disk the PNGs lie next to report.md."""
    report = small_report().model_copy(update={"plots": ["zipf-rank-frequency.png", "lexical-measures.png"]})
    markdown = render_markdown(report)
    assert "![zipf rank frequency](zipf-rank-frequency.png)" in markdown
    assert "![lexical measures](lexical-measures.png)" in markdown


def test_the_artifact_embeds_each_plot_as_a_data_uri() -> None:
    """The image's base64 decodes back to the PNG's bytes."""
    png = b"\x89PNG\r\n\x1a\n" + bytes(range(256))
    report = small_report().model_copy(update={"plots": ["zipf-rank-frequency.png"]})
    markdown = render_artifact_markdown(report, {"zipf-rank-frequency.png": png})
    prefix = "![zipf rank frequency](data:image/png;base64,"
    encoded = markdown.split(prefix, 1)[1].split(")", 1)[0]
    assert base64.b64decode(encoded) == png


def test_the_artifact_refuses_a_missing_plot() -> None:
    """The message names the plot and what to pass."""
    report = small_report().model_copy(update={"plots": ["heaps-vocabulary-growth.png"]})
    with pytest.raises(InvalidParameterError, match=r"\['heaps-vocabulary-growth.png'\].*write_plots\(\)'s whole"):
        render_artifact_markdown(report, {})


def test_an_unknown_language_code_is_refused_by_the_model() -> None:
    """report.json's languages are the corpus' codes."""
    data = small_report().model_dump()
    data["languages"]["it"] = data["languages"].pop("de")
    with pytest.raises(ValidationError, match="it"):
        CorpusReport.model_validate(data)


def test_the_report_keeps_the_top_n_it_is_asked_for() -> None:
    """`--top 2` keeps two of each n-gram list (the default keeps 20)."""
    report = build_report("week-10", ["fr"], small_counts(), [], [], 1, 0, GENERATED_AT, top=2)
    statistics = report.languages["fr"]
    assert len(statistics.top_unigrams) == len(statistics.top_bigrams) == 2
