"""Week over week: hand-checked deltas and word changes, bounds past the word lists, and the report chosen."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta, timezone

import pytest

from tasks.corpus import report as report_module
from tasks.corpus.comparison import compare, find_previous_report, statistic_changes
from tasks.corpus.counting import PartialCounts, count_batch
from tasks.corpus.languages import LanguageCode
from tasks.corpus.report import (
    CorpusReport,
    StatisticChange,
    build_report,
    render_markdown,
)
from tasks.corpus.statistics import compute_statistics
from tasks.corpus.zipf import PowerLawFit
from tasks.errors import CorruptOutputError, InvalidParameterError

MONDAY = datetime(2026, 3, 2, 6, 0, tzinfo=timezone.utc)


def weekly_report(
    job: str, week: int, languages: Sequence[LanguageCode], documents: Mapping[LanguageCode, list[list[list[str]]]]
) -> CorpusReport:
    """A report of hand-made documents, generated `week` weeks after MONDAY."""
    counts = {code: count_batch(language, "cpu") for code, language in documents.items()}
    return build_report(job, languages, counts, [], [], 1, 0, MONDAY + timedelta(weeks=week))


@pytest.fixture
def previous() -> CorpusReport:
    """Week 1: French "a a b c"; English "x y"; German requested, with no documents."""
    return weekly_report("week-1", 0, ["fr", "en", "de"], {"fr": [[["a", "a", "b", "c"]]], "en": [[["x", "y"]]]})


@pytest.fixture
def current() -> CorpusReport:
    """Week 2: French "a a a" and "b d d"; German still empty; Chinese added, English dropped."""
    documents: dict[LanguageCode, list[list[list[str]]]] = {"fr": [[["a", "a", "a"]], [["b", "d", "d"]]],
                                                           "zh": [[["中国", "人"]]]}  # fmt: skip
    return weekly_report("week-2", 1, ["fr", "de", "zh"], documents)


def by_name(changes: list[StatisticChange]) -> dict[str, StatisticChange]:
    """The changes keyed by statistic."""
    return {change.statistic: change for change in changes}


def test_languages_added_and_removed_and_those_compared(previous: CorpusReport, current: CorpusReport) -> None:
    """Chinese is new, English gone; French and German are in both."""
    comparison = compare(current, previous)
    assert (comparison.languages_added, comparison.languages_removed) == (["zh"], ["en"])
    assert list(comparison.languages) == ["fr", "de"]
    assert (comparison.previous_job, comparison.previous_generated_at) == ("week-1", MONDAY)


def test_statistic_deltas_on_a_hand_checked_pair(previous: CorpusReport, current: CorpusReport) -> None:
    """French: 1 → 2 documents, 4 → 6 tokens, 3 → 3 types, TTR 0.75 → 0.5, hapaxes 2 → 1."""
    changes = by_name(compare(current, previous).languages["fr"].statistics)
    assert changes["documents"] == StatisticChange(statistic="documents", previous=1, current=2, change=1,
                                                   relative_change=1.0)  # fmt: skip
    assert (changes["tokens"].change, changes["tokens"].relative_change) == (2, 0.5)
    assert (changes["types"].change, changes["types"].relative_change) == (0, 0.0)
    assert changes["type_token_ratio"].change == pytest.approx(-0.25)
    assert changes["type_token_ratio"].relative_change == pytest.approx(-1 / 3)
    assert (changes["hapax_legomena"].change, changes["hapax_legomena"].relative_change) == (-1, -0.5)
    assert changes["mattr"] == StatisticChange(statistic="mattr", previous=None, current=None, change=None,
                                               relative_change=None)  # fmt: skip


def test_an_empty_language_on_both_sides_changes_by_zero(previous: CorpusReport, current: CorpusReport) -> None:
    """German: every count 0 → 0, no relative change (nothing to divide by), no words."""
    german = compare(current, previous).languages["de"]
    assert by_name(german.statistics)["tokens"] == StatisticChange(statistic="tokens", previous=0, current=0,
                                                                   change=0, relative_change=None)  # fmt: skip
    assert (german.words_gained, german.words_lost) == ([], [])


def test_every_numeric_statistic_is_compared_including_the_fits() -> None:
    """The fits' fields are dotted; distributions and n-gram lists are not statistics to subtract."""
    names = [change.statistic for change in statistic_changes(compute_statistics(PartialCounts()),
                                                              compute_statistics(PartialCounts()))]  # fmt: skip
    assert names[:4] == ["documents", "sentences", "tokens", "types"]
    for name in ("entropy_bits", "mattr", "zipf.alpha", "zipf.rank_exponent", "zipf.ks_distance", "heaps.beta"):
        assert name in names
    assert not {"word_length_distribution", "top_unigrams", "zipf", "heaps"} & set(names)


def test_a_fit_present_on_one_side_only_has_no_delta() -> None:
    """Zipf fitted this week, not last: its values are shown, the change is None."""
    before = compute_statistics(count_batch([[["a", "b"]]], "cpu"))
    fit = PowerLawFit(alpha=2.0, rank_exponent=1.0, xmin=1, tail_size=60, ks_distance=0.05)
    change = by_name(statistic_changes(before.model_copy(update={"zipf": fit}), before))["zipf.alpha"]
    assert (change.previous, change.current, change.change) == (None, 2.0, None)


def test_words_gained_and_lost_per_million_tokens(previous: CorpusReport, current: CorpusReport) -> None:
    """French per million: a 500,000 → 500,000; b 250,000 → 166,667; c 250,000 → 0; d 0 → 333,333."""
    french = compare(current, previous).languages["fr"]
    assert [(change.word, change.bound) for change in french.words_gained] == [("d", False)]
    assert french.words_gained[0].change_per_million == pytest.approx(1e6 / 3)
    assert [change.word for change in french.words_lost] == ["c", "b"]
    assert [change.change_per_million for change in french.words_lost] == pytest.approx([-250_000, -1e6 / 12])
    assert french.words_lost[0].current_per_million == 0.0


def test_a_word_beyond_a_truncated_list_gets_a_bound(monkeypatch: pytest.MonkeyPatch) -> None:
    """Lists of 2: last week {a 5, b 3} (c 2 left out), this week {c 6, a 2} (b 2 left out), of 10 tokens each."""
    monkeypatch.setattr(report_module, "FREQUENT_WORDS", 2)
    before = weekly_report("week-1", 0, ["fr"], {"fr": [[["a"] * 5 + ["b"] * 3 + ["c"] * 2]]})
    after = weekly_report("week-2", 1, ["fr"], {"fr": [[["c"] * 6 + ["a"] * 2 + ["b"] * 2]]})
    french = compare(after, before).languages["fr"]
    gained = french.words_gained[0]
    assert (gained.word, gained.previous_per_million, gained.change_per_million, gained.bound) == (
        "c", 300_000, 300_000, True)  # fmt: skip
    assert [(change.word, change.change_per_million, change.bound) for change in french.words_lost] == [
        ("a", -300_000, False), ("b", -100_000, True)]  # fmt: skip


def test_word_changes_stop_at_top(previous: CorpusReport, current: CorpusReport) -> None:
    """top=1 keeps the single largest gain and loss."""
    french = compare(current, previous, top=1).languages["fr"]
    assert [change.word for change in french.words_lost] == ["c"]


def test_the_week_over_week_section_in_markdown(previous: CorpusReport, current: CorpusReport) -> None:
    """Deltas with their relative change, German's unchanged zeros, and the words table."""
    report = current.model_copy(update={"comparison": compare(current, previous)})
    markdown = render_markdown(report)
    assert "## Week over week" in markdown
    assert "Against job `week-1`, generated 2026-03-02T06:00:00+00:00." in markdown
    assert "Languages added: zh (Chinese); removed: en (English)." in markdown
    assert "| statistic | fr (French) | de (German) |" in markdown
    assert "| tokens | +2 (+50.0%) | +0 |" in markdown
    assert "| type_token_ratio | -0.25 (-33.3%) | +0 |" in markdown
    assert "| mattr | – | – |" in markdown
    assert "| 1 | d | +333,333.3 | c | -250,000.0 |" in markdown
    assert "| 2 |  |  | b | -83,333.3 |" in markdown


def test_a_bounded_change_is_marked_in_markdown(monkeypatch: pytest.MonkeyPatch) -> None:
    """A gain past last week's list reads "≥", a loss past this week's "≤"."""
    monkeypatch.setattr(report_module, "FREQUENT_WORDS", 2)
    before = weekly_report("week-1", 0, ["fr"], {"fr": [[["a"] * 5 + ["b"] * 3 + ["c"] * 2]]})
    after = weekly_report("week-2", 1, ["fr"], {"fr": [[["c"] * 6 + ["a"] * 2 + ["b"] * 2]]})
    markdown = render_markdown(after.model_copy(update={"comparison": compare(after, before)}))
    assert "| 1 | c | ≥ +300,000.0 | a | -300,000.0 |" in markdown
    assert "| 2 |  |  | b | ≤ -100,000.0 |" in markdown


@pytest.fixture
def reports(previous: CorpusReport, current: CorpusReport) -> dict[str, bytes]:
    """The destination's report.json files: two weeks, this week's run, a broken file and a future schema."""
    this_week = current.model_copy(update={"job": "week-3", "generated_at": MONDAY + timedelta(weeks=2)})
    future = this_week.model_dump(mode="json") | {"schema_version": 2, "job": "future"}
    return {
        "week-1": previous.model_dump_json().encode(),
        "week-2": current.model_dump_json().encode(),
        "week-3": this_week.model_dump_json().encode(),
        "broken": b"{not json",
        "future": json.dumps(future).encode(),
    }


def test_the_latest_other_report_is_chosen(reports: dict[str, bytes]) -> None:
    """Week 3 compares with week 2; unreadable reports are passed over."""
    chosen = find_previous_report(reports, "week-3")
    assert chosen is not None and chosen.job == "week-2"


def test_a_rerun_of_an_older_job_compares_with_the_latest_other(reports: dict[str, bytes]) -> None:
    """Rerunning week 1 finds week 3, the latest report that is not its own."""
    chosen = find_previous_report(reports, "week-1")
    assert chosen is not None and chosen.job == "week-3"


def test_compare_with_names_the_report(reports: dict[str, bytes]) -> None:
    """--compare-with week-1 picks week 1 although week 2 is later."""
    chosen = find_previous_report(reports, "week-3", compare_with="week-1")
    assert chosen is not None and chosen.job == "week-1"


def test_no_other_report_means_no_comparison(reports: dict[str, bytes]) -> None:
    """The first week, or only unreadable neighbours: None."""
    assert find_previous_report({}, "week-1") is None
    assert find_previous_report({"week-1": reports["week-1"], "broken": b"{"}, "week-1") is None


def test_compare_with_a_missing_report_is_refused(reports: dict[str, bytes]) -> None:
    """The message lists the reports there are."""
    expected = r"--compare-with 'week-9': no report.json .*broken, future, week-1"
    with pytest.raises(InvalidParameterError, match=expected):
        find_previous_report(reports, "week-3", compare_with="week-9")


def test_compare_with_itself_is_refused(reports: dict[str, bytes]) -> None:
    """A job is not its own previous week."""
    with pytest.raises(InvalidParameterError, match="'week-3' is this job itself; name an earlier job"):
        find_previous_report(reports, "week-3", compare_with="week-3")


@pytest.mark.parametrize("job", ["broken", "future"])
def test_compare_with_an_unreadable_report_is_refused(reports: dict[str, bytes], job: str) -> None:
    """A named report that does not read is an error, not silently skipped."""
    with pytest.raises(CorruptOutputError, match=f"{job}/report.json does not read as a corpus report"):
        find_previous_report(reports, "week-3", compare_with=job)
