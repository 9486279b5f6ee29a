"""Week over week: this report against an earlier one, and which earlier one.

Every numeric statistic gets current − previous and that change relative to the previous value.
Words are compared by frequency per million tokens, so weeks of different sizes compare fairly.
A report keeps only its FREQUENT_WORDS most frequent words; a word beyond one report's list gets
that list's lowest frequency, an upper bound on its own, so a gain or loss is never overstated.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import UnionType
from typing import Union, get_args, get_origin

from pydantic import BaseModel, ValidationError

from tasks.corpus.report import (
    SCHEMA_VERSION,
    Comparison,
    CorpusReport,
    LanguageComparison,
    StatisticChange,
    WordChange,
)
from tasks.corpus.statistics import LanguageStatistics
from tasks.errors import CorruptOutputError, InvalidParameterError

TOP_WORD_CHANGES = 20
PER_MILLION = 1_000_000


def compare(current: CorpusReport, previous: CorpusReport, top: int = TOP_WORD_CHANGES) -> Comparison:
    """Deltas of every statistic, and the `top` words gained and lost, for the languages both reports hold."""
    languages = {}
    for code, statistics in current.languages.items():
        if code in previous.languages:
            gained, lost = word_changes(
                current.frequent_words.get(code, {}), statistics,
                previous.frequent_words.get(code, {}), previous.languages[code], top,
            )  # fmt: skip
            changes = statistic_changes(statistics, previous.languages[code])
            languages[code] = LanguageComparison(statistics=changes, words_gained=gained, words_lost=lost)
    return Comparison(
        previous_job=previous.job,
        previous_generated_at=previous.generated_at,
        languages=languages,
        languages_added=[code for code in current.languages if code not in previous.languages],
        languages_removed=[code for code in previous.languages if code not in current.languages],
    )


def statistic_changes(current: LanguageStatistics, previous: LanguageStatistics) -> list[StatisticChange]:
    """Every numeric field of LanguageStatistics (nested fits dotted: `zipf.alpha`), in the model's order."""
    changes = []
    for name in _numeric_fields(LanguageStatistics):
        before, after = _value(previous, name), _value(current, name)
        change = None if before is None or after is None else after - before
        relative = None if change is None or not before else change / abs(before)
        changes.append(
            StatisticChange(statistic=name, previous=before, current=after, change=change, relative_change=relative)
        )
    return changes


def word_changes(
    current_words: Mapping[str, int],
    current: LanguageStatistics,
    previous_words: Mapping[str, int],
    previous: LanguageStatistics,
    top: int = TOP_WORD_CHANGES,
) -> tuple[list[WordChange], list[WordChange]]:
    """The `top` words gained and lost, by change in occurrences per million tokens; none if a side has no tokens."""
    if not (current.tokens and previous.tokens):
        return [], []
    now, now_ceiling = _per_million(current_words, current)
    before, before_ceiling = _per_million(previous_words, previous)
    gained = [_word(word, before.get(word, before_ceiling), rate, word not in before and before_ceiling > 0)
              for word, rate in now.items()]  # fmt: skip
    lost = [_word(word, rate, now.get(word, now_ceiling), word not in now and now_ceiling > 0)
            for word, rate in before.items()]  # fmt: skip
    gained = sorted((change for change in gained if change.change_per_million > 0),
                    key=lambda change: (-change.change_per_million, change.word))  # fmt: skip
    lost = sorted((change for change in lost if change.change_per_million < 0),
                  key=lambda change: (change.change_per_million, change.word))  # fmt: skip
    return gained[:top], lost[:top]


def find_previous_report(
    reports: Mapping[str, bytes], current_job: str, compare_with: str | None = None
) -> CorpusReport | None:
    """The report to compare with: `compare_with`'s, else the latest other one by generated_at, else None.

    Args:
        reports: job name -> its report.json, for every report found at the destination.
        current_job: this run's job, never compared with itself.
        compare_with: `--compare-with`, a job whose report must be there.

    Unnamed reports that do not read as this schema (broken, or written by another version) are
    passed over; a named one that does not read is an error.

    Raises:
        InvalidParameterError: `compare_with` is this job, or has no report at the destination.
        CorruptOutputError: `compare_with`'s report.json does not read as a corpus report.
    """
    if compare_with is None:
        candidates = []
        for job, data in reports.items():
            if job != current_job:
                try:
                    candidates.append(CorpusReport.model_validate_json(data))
                except ValidationError:
                    continue
        return max(candidates, key=lambda report: (report.generated_at, report.job), default=None)
    if compare_with == current_job:
        raise InvalidParameterError(
            f"--compare-with {compare_with!r} is this job itself; name an earlier job, or leave it out for the latest"
        )
    if compare_with not in reports:
        raise InvalidParameterError(
            f"--compare-with {compare_with!r}: no report.json for that job at the destination; reports there: "
            f"{', '.join(sorted(reports)) or 'none'}; name one of them, or leave it out for the latest"
        )
    try:
        return CorpusReport.model_validate_json(reports[compare_with])
    except ValidationError as error:
        raise CorruptOutputError(
            f"{compare_with}/report.json does not read as a corpus report (schema version {SCHEMA_VERSION}): "
            f"{error.error_count()} problem(s), the first: {error.errors()[0]['msg']}; rerun that job, "
            "or compare with another"
        ) from None


def _per_million(words: Mapping[str, int], statistics: LanguageStatistics) -> tuple[dict[str, float], float]:
    """Each listed word's occurrences per million tokens, and the most an unlisted word can have.

    That ceiling is 0 where the list holds every type, else the list's lowest frequency.
    """
    scale = PER_MILLION / statistics.tokens
    rates = {word: count * scale for word, count in words.items()}
    complete = len(words) >= statistics.types
    return rates, 0.0 if complete or not rates else min(rates.values())


def _word(word: str, previous: float, current: float, bound: bool) -> WordChange:
    return WordChange(word=word, previous_per_million=previous, current_per_million=current,
                      change_per_million=current - previous, bound=bound)  # fmt: skip


def _numeric_fields(model: type[BaseModel], prefix: str = "") -> list[str]:
    """The int and float fields of `model`, optional or not, descending into nested models."""
    names = []
    for name, field in model.model_fields.items():
        annotation = field.annotation
        kinds = get_args(annotation) if get_origin(annotation) in (Union, UnionType) else (annotation,)
        nested = [kind for kind in kinds if isinstance(kind, type) and issubclass(kind, BaseModel)]
        if nested:
            names += _numeric_fields(nested[0], f"{prefix}{name}.")
        elif any(kind in (int, float) for kind in kinds):
            names.append(prefix + name)
    return names


def _value(statistics: LanguageStatistics, dotted: str) -> int | float | None:
    """A dotted field's value; None where it, or a model on the way to it, is None."""
    value: object = statistics
    for part in dotted.split("."):
        value = getattr(value, part)
        if value is None:
            return None
    return value if isinstance(value, (int, float)) else None
