"""report.json's model, and report.md rendered from it.

The flow builds the report from the merged counts (`build_report`), draws the plots from the same
counts (tasks/corpus/plots.py), compares with an earlier report (tasks/corpus/comparison.py), and
adds both with `report.model_copy(update={"plots": ..., "comparison": ...})`.
report.md links each PNG by its file name, next to it at the destination. The markdown artifact
embeds the PNGs as `data:image/png;base64` URIs instead (`render_artifact_markdown`): a relative
link would resolve against the Prefect UI's own address, and both Prefect UIs show data-URI
images (3.9's React UI allows `data:image/` sources in its sanitiser explicitly).
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timezone
from typing import Final, Literal

import numpy as np
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator

from tasks.corpus.counting import PartialCounts
from tasks.corpus.languages import LANGUAGE_NAMES, LanguageCode
from tasks.corpus.statistics import (
    TOP_NGRAMS,
    LanguageStatistics,
    NgramFrequency,
    compute_statistics,
)
from tasks.engine.models import ItemFailure
from tasks.errors import InvalidParameterError

SCHEMA_VERSION: Final = 1
# Words kept per language for next week's comparison: enough for the top movers, about 40 KB of JSON.
FREQUENT_WORDS = 2000
DEFINITIONS_URL = "https://github.com/colabflow/colabflow/blob/main/docs/corpus-analysis.md"
# Unassigned or skipped documents listed in report.md; report.json lists them all.
LISTED_DOCUMENTS = 100


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class StatisticChange(_Frozen):
    """One statistic of one language, this report against the previous one."""

    statistic: str = Field(description="The LanguageStatistics field; nested fields dotted, as `zipf.alpha`.")
    previous: int | float | None = Field(description="Its value in the previous report; None where undefined.")
    current: int | float | None = Field(description="Its value in this report; None where undefined.")
    change: int | float | None = Field(description="current − previous; None where either is None.")
    relative_change: float | None = Field(description="change / |previous|; None where previous is 0 or None.")


class WordChange(_Frozen):
    """A word whose frequency per million tokens rose or fell."""

    word: str = Field(description="The word, as the tokeniser left it.")
    previous_per_million: float = Field(ge=0.0, description="Occurrences per million tokens in the previous report.")
    current_per_million: float = Field(ge=0.0, description="Occurrences per million tokens in this report.")
    change_per_million: float = Field(description="current_per_million − previous_per_million.")
    bound: bool = Field(
        description="True where the word was beyond one report's frequent_words: that list's lowest frequency, "
        "an upper bound, stands in for the word's, so the change is at least this large."
    )


class LanguageComparison(_Frozen):
    """One language, this report against the previous one."""

    statistics: list[StatisticChange] = Field(description="Every numeric statistic, in LanguageStatistics' order.")
    words_gained: list[WordChange] = Field(description="The largest rises in frequency per million, largest first.")
    words_lost: list[WordChange] = Field(description="The largest falls in frequency per million, largest first.")


class Comparison(_Frozen):
    """This report against an earlier one: `--compare-with`, or the latest other at the destination."""

    previous_job: str = Field(description="The job of the report compared with.")
    previous_generated_at: AwareDatetime = Field(description="When that report was generated.")
    languages: dict[LanguageCode, LanguageComparison] = Field(description="The languages both reports hold.")
    languages_added: list[LanguageCode] = Field(description="Languages in this report only.")
    languages_removed: list[LanguageCode] = Field(description="Languages in the previous report only.")


class CorpusReport(_Frozen):
    """report.json: one run of the corpus analysis."""

    schema_version: Literal[1] = Field(default=SCHEMA_VERSION, description="This model's version.")
    job: str = Field(min_length=1, description="The job's name; the report lies in <dest>/<job>/.")
    generated_at: AwareDatetime = Field(description="When the report was built.")
    languages: dict[LanguageCode, LanguageStatistics] = Field(
        description="Every requested language, in the order requested; one without documents has zeros."
    )
    frequent_words: dict[LanguageCode, dict[str, int]] = Field(
        description=f"Each language's {FREQUENT_WORDS} most frequent words with their counts, for next week's "
        "comparison; every word where the language has fewer types."
    )
    documents_total: int = Field(ge=0, description="Documents found: counted, unassigned and skipped.")
    unassigned: list[ItemFailure] = Field(description="Documents no wanted language could be given.")
    skipped: list[ItemFailure] = Field(
        description="Documents not counted: binary, not UTF-8, or unreadable; the job's failed items (quarantine.jsonl)."
    )
    batches_run: int = Field(ge=0, description="Batches counted in this run.")
    batches_reused: int = Field(ge=0, description="Batches whose counts an earlier run of this job had saved.")
    comparison: Comparison | None = Field(default=None, description="Week over week; None without a report before.")
    plots: list[str] = Field(default_factory=list, description="PNG file names next to report.json.")

    @model_validator(mode="after")
    def _documents_add_up(self) -> CorpusReport:
        counted = sum(statistics.documents for statistics in self.languages.values())
        if self.documents_total != counted + len(self.unassigned) + len(self.skipped):
            raise ValueError(
                f"documents_total {self.documents_total} should be the {counted} counted + {len(self.unassigned)} "
                f"unassigned + {len(self.skipped)} skipped"
            )
        return self


def build_report(
    job: str,
    languages: Sequence[LanguageCode],
    counts: Mapping[LanguageCode, PartialCounts],
    unassigned: Sequence[ItemFailure],
    skipped: Sequence[ItemFailure],
    batches_run: int,
    batches_reused: int,
    generated_at: datetime | None = None,
    top: int = TOP_NGRAMS,
) -> CorpusReport:
    """The report of a run's merged counts, with the `top` n-grams; a requested language missing from `counts` gets zeros."""
    counted = {code: counts.get(code, PartialCounts()) for code in languages}
    statistics = {code: compute_statistics(language, top) for code, language in counted.items()}
    return CorpusReport(
        job=job,
        generated_at=generated_at or datetime.now(timezone.utc),
        languages=statistics,
        frequent_words={code: _frequent_words(language) for code, language in counted.items()},
        documents_total=sum(language.documents for language in counted.values()) + len(unassigned) + len(skipped),
        unassigned=list(unassigned),
        skipped=list(skipped),
        batches_run=batches_run,
        batches_reused=batches_reused,
    )


def render_markdown(report: CorpusReport) -> str:
    """report.md: the plots linked by file name, as they lie next to it."""
    return _render(report, lambda name: name)


def render_artifact_markdown(report: CorpusReport, plots: Mapping[str, bytes]) -> str:
    """The markdown artifact: report.md with each plot embedded as a data URI, since the UI cannot reach files.

    Raises:
        InvalidParameterError: a plot the report names is not in `plots`.
    """
    missing = [name for name in report.plots if name not in plots]
    if missing:
        raise InvalidParameterError(
            f"the report names plots {missing} that were not passed; pass write_plots()'s whole result"
        )
    return _render(report, lambda name: "data:image/png;base64," + base64.b64encode(plots[name]).decode("ascii"))


def language_label(code: LanguageCode) -> str:
    """`fr (French)`."""
    return f"{code} ({LANGUAGE_NAMES[code]})"


def _frequent_words(counts: PartialCounts) -> dict[str, int]:
    """The most frequent words, ties in code-point order (the vocabulary's)."""
    order = np.argsort(-np.asarray(counts.unigram_counts, dtype=np.int64), kind="stable")[:FREQUENT_WORDS]
    return {counts.vocabulary[index]: counts.unigram_counts[index] for index in order}


def _render(report: CorpusReport, source: Callable[[str], str]) -> str:
    sections = [_summary(report), _language_table(report), _plots(report, source), _top_ngrams(report)]
    if report.comparison is not None:
        sections.append(_week_over_week(report.comparison))
    sections.append(_documents("Unassigned documents", "No wanted language could be given to these.",
                               report.unassigned))
    sections.append(_documents("Skipped documents", "These were not counted: binary, not UTF-8, or unreadable. "
                               "They are the job's failed items, also in quarantine.jsonl.", report.skipped))
    return "\n\n".join(sections) + "\n"


def _summary(report: CorpusReport) -> str:
    counted = sum(statistics.documents for statistics in report.languages.values())
    return (
        f"# Corpus analysis `{report.job}`\n\n"
        f"Generated {report.generated_at.isoformat(timespec='seconds')}. {report.documents_total:,} documents: "
        f"{counted:,} counted in the {len(report.languages)} requested languages, "
        f"{len(report.unassigned):,} unassigned, {len(report.skipped):,} skipped. "
        f"Batches: {report.batches_run:,} run, {report.batches_reused:,} reused from an earlier run.\n\n"
        f"Every statistic is defined in [docs/corpus-analysis.md]({DEFINITIONS_URL})."
    )


def _language_table(report: CorpusReport) -> str:
    columns = ["language", "documents", "sentences", "tokens", "types", "TTR", "MATTR", "entropy (bits/token)",
               "hapaxes (V1/V)", "Zipf s", "Zipf α", "Heaps β"]  # fmt: skip
    rows = ["## Languages", "", "| " + " | ".join(columns) + " |", "|---|" + "---:|" * (len(columns) - 1)]
    for code, s in report.languages.items():
        zipf = (None, None) if s.zipf is None else (s.zipf.rank_exponent, s.zipf.alpha)
        cells = [language_label(code), _number(s.documents), _number(s.sentences), _number(s.tokens),
                 _number(s.types), _number(s.type_token_ratio), _number(s.mattr), _number(s.entropy_bits),
                 _number(s.hapax_ratio), _number(zipf[0]), _number(zipf[1]),
                 _number(None if s.heaps is None else s.heaps.beta)]  # fmt: skip
        rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows)


def _plots(report: CorpusReport, source: Callable[[str], str]) -> str:
    images = [f"![{name.removesuffix('.png').replace('-', ' ')}]({source(name)})" for name in report.plots]
    return "## Plots\n\n" + ("\n\n".join(images) if images else "No plots were drawn.")


def _top_ngrams(report: CorpusReport) -> str:
    parts = ["## Most frequent words, bigrams and trigrams"]
    for code, s in report.languages.items():
        parts.append(f"### {language_label(code)}")
        if not s.tokens:
            parts.append("No documents.")
            continue
        columns = (s.top_unigrams, s.top_bigrams, s.top_trigrams)
        rows = ["| # | word | count | bigram | count | trigram | count |", "|---:|---|---:|---|---:|---|---:|"]
        for rank in range(max(map(len, columns))):
            cells = [_ngram_cells(column[rank] if rank < len(column) else None) for column in columns]
            rows.append(f"| {rank + 1} | " + " | ".join(cells) + " |")
        parts.append("\n".join(rows))
    return "\n\n".join(parts)


def _week_over_week(comparison: Comparison) -> str:
    codes = list(comparison.languages)
    added = ", ".join(map(language_label, comparison.languages_added)) or "none"
    removed = ", ".join(map(language_label, comparison.languages_removed)) or "none"
    generated = comparison.previous_generated_at.isoformat(timespec="seconds")
    parts = [
        "## Week over week",
        (f"Against job `{comparison.previous_job}`, generated {generated}. Languages added: {added}; removed: "
         f"{removed}. Each cell is this report − the previous one, then that change relative to the previous value."),
    ]
    if codes:
        rows = ["| statistic | " + " | ".join(map(language_label, codes)) + " |", "|---|" + "---:|" * len(codes)]
        names = [change.statistic for change in comparison.languages[codes[0]].statistics]
        for row, name in enumerate(names):
            cells = [_change(comparison.languages[code].statistics[row]) for code in codes]
            rows.append(f"| {name} | " + " | ".join(cells) + " |")
        parts.append("\n".join(rows))
    for code, language in comparison.languages.items():
        parts.append(f"### {language_label(code)}: words gained and lost, per million tokens")
        gained, lost = language.words_gained, language.words_lost
        if not (gained or lost):
            parts.append("No word rose or fell, or one of the two reports has no tokens in this language.")
            continue
        rows = ["| # | gained | change | lost | change |", "|---:|---|---:|---|---:|"]
        for rank in range(max(len(gained), len(lost))):
            cells = [_word_cells(side[rank], mark) if rank < len(side) else " | "
                     for side, mark in ((gained, "≥ "), (lost, "≤ "))]  # fmt: skip
            rows.append(f"| {rank + 1} | " + " | ".join(cells) + " |")
        parts.append("\n".join(rows))
    parts.append("Where a word was beyond a report's list of frequent words, that list's lowest frequency stands "
                 "in for its own, and the change shown (≥ for a gain, ≤ for a loss) is the smallest it can be.")
    return "\n\n".join(parts)


def _documents(title: str, explanation: str, notes: Sequence[ItemFailure]) -> str:
    """A list of documents with their reasons; a reason that begins with the document's id does not repeat it."""
    if not notes:
        return f"## {title} (0)\n\nNone."
    listed = notes[:LISTED_DOCUMENTS]
    lines = [f"- `{note.item_id}`: {note.reason.removeprefix(note.item_id + ': ')}" for note in listed]
    if len(notes) > LISTED_DOCUMENTS:
        lines.append(f"- … and {len(notes) - LISTED_DOCUMENTS:,} more, listed in report.json.")
    return f"## {title} ({len(notes):,})\n\n{explanation}\n\n" + "\n".join(lines)


def _ngram_cells(entry: NgramFrequency | None) -> str:
    return " | " if entry is None else f"{' '.join(entry.ngram)} | {entry.count:,}"


def _word_cells(change: WordChange, mark: str) -> str:
    return f"{change.word} | {mark if change.bound else ''}{change.change_per_million:+,.1f}"


def _change(change: StatisticChange) -> str:
    if change.change is None:
        return "–"
    relative = "" if change.relative_change is None else f" ({change.relative_change:+.1%})"
    return _number(change.change, signed=True) + relative


def _number(value: float | None, signed: bool = False) -> str:
    """Integers with thousands separators, other numbers to four significant digits, None as a dash."""
    if value is None:
        return "–"
    sign = "+" if signed else ""
    return f"{value:{sign},}" if isinstance(value, int) else f"{value:{sign}.4g}"
