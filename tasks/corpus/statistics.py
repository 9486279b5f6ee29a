"""One language's statistics, from its merged counts. Each field's description is its definition.

Heaps' law describes a curve (types seen against tokens read), not a distribution, so it is fitted
by least squares on log types against log tokens. Zipf's law describes a distribution, so it is
fitted by maximum likelihood (tasks/corpus/zipf.py).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray
from pydantic import BaseModel, ConfigDict, Field

from tasks.corpus.counting import NgramTable, PartialCounts
from tasks.corpus.zipf import PowerLawFit, fit_power_law

TOP_NGRAMS = 20
HEAPS_FIRST_TOKEN = 100
HEAPS_MIN_TOKENS = 1000
HEAPS_POINTS = 100


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class NgramFrequency(_Frozen):
    """One n-gram and how often it occurs."""

    ngram: list[str] = Field(description="The n-gram's tokens, in order.")
    count: int = Field(ge=1, description="Occurrences within sentences.")


class HeapsFit(_Frozen):
    """Heaps' law, types = K · tokens^β, fitted to the language's vocabulary growth."""

    k: float = Field(gt=0.0, description="K in types = K · tokens^β.")
    beta: float = Field(description="β in types = K · tokens^β: how fast the vocabulary grows (0 < β < 1 for words).")
    points: int = Field(ge=2, description="Points of the growth curve fitted: log-spaced token counts.")


class LanguageStatistics(_Frozen):
    """What report.json says about one language."""

    documents: int = Field(ge=0, description="Documents counted.")
    sentences: int = Field(ge=0, description="Sentences, as the tokeniser split them.")
    tokens: int = Field(ge=0, description="N: word tokens.")
    types: int = Field(ge=0, description="V: distinct word tokens (case and form as the tokeniser left them).")
    characters: int = Field(ge=0, description="Characters (Unicode code points) in word tokens; spaces excluded.")
    character_types: int = Field(ge=0, description="Distinct characters in word tokens.")
    type_token_ratio: float = Field(ge=0.0, le=1.0, description="TTR = V / N; falls as N grows, so compare at equal N.")
    mattr: float | None = Field(
        ge=0.0,
        le=1.0,
        description="Moving-average TTR: the mean, over every window of mattr_window consecutive tokens (in document "
        "order, across document boundaries), of distinct tokens / mattr_window. None below mattr_window tokens.",
    )
    mattr_window: int = Field(ge=2, description="The MATTR window, in tokens (500).")
    hapax_legomena: int = Field(ge=0, description="V1: types that occur exactly once.")
    hapax_ratio: float = Field(ge=0.0, le=1.0, description="V1 / V: share of the vocabulary seen once.")
    hapax_token_ratio: float = Field(
        ge=0.0,
        le=1.0,
        description="V1 / N: share of tokens that are hapaxes (Good–Turing's estimate of the chance that the next "
        "token is a new type).",
    )
    dis_legomena: int = Field(ge=0, description="V2: types that occur exactly twice.")
    dis_ratio: float = Field(ge=0.0, le=1.0, description="V2 / V: share of the vocabulary seen twice.")
    dis_token_ratio: float = Field(ge=0.0, le=1.0, description="2·V2 / N: share of tokens that belong to dis legomena.")
    entropy_bits: float = Field(
        ge=0.0,
        description="Shannon entropy of the unigram distribution, H = −Σ p·log2 p with p = count / N, in bits per "
        "token; log2 V when all types are equally frequent.",
    )
    zipf: PowerLawFit | None = Field(
        description="Zipf's law fitted to the types' frequencies by discrete maximum likelihood, with xmin chosen by "
        "the Kolmogorov–Smirnov distance (Clauset, Shalizi and Newman 2009). None without enough types."
    )
    heaps: HeapsFit | None = Field(
        description=f"Heaps' law fitted by least squares on log types against log tokens, at {HEAPS_POINTS} log-spaced "
        f"token counts from the {HEAPS_FIRST_TOKEN}th token to the last. None below {HEAPS_MIN_TOKENS} tokens."
    )
    top_unigrams: list[NgramFrequency] = Field(
        description="The most frequent tokens; ties in code-point order, comparing n-grams token by token."
    )
    top_bigrams: list[NgramFrequency] = Field(description="The most frequent bigrams within sentences; ties as above.")
    top_trigrams: list[NgramFrequency] = Field(
        description="The most frequent trigrams within sentences; ties as above."
    )
    word_length_distribution: dict[int, int] = Field(description="Tokens by length in characters.")
    sentence_length_distribution: dict[int, int] = Field(description="Sentences by length in tokens.")


def compute_statistics(counts: PartialCounts, top: int = TOP_NGRAMS) -> LanguageStatistics:
    """The statistics of a language's merged counts; zeros and None where it has no tokens."""
    frequencies = np.asarray(counts.unigram_counts, dtype=np.int64)
    tokens, types = int(frequencies.sum()), len(frequencies)
    hapax, dis = int((frequencies == 1).sum()), int((frequencies == 2).sum())
    return LanguageStatistics(
        documents=counts.documents,
        sentences=sum(counts.sentence_lengths.values()),
        tokens=tokens,
        types=types,
        characters=sum(counts.characters.values()),
        character_types=len(counts.characters),
        type_token_ratio=types / tokens if tokens else 0.0,
        mattr=counts.window_types / (counts.window_count * counts.window) if counts.window_count else None,
        mattr_window=counts.window,
        hapax_legomena=hapax,
        hapax_ratio=hapax / types if types else 0.0,
        hapax_token_ratio=hapax / tokens if tokens else 0.0,
        dis_legomena=dis,
        dis_ratio=dis / types if types else 0.0,
        dis_token_ratio=2 * dis / tokens if tokens else 0.0,
        entropy_bits=_entropy_bits(frequencies),
        zipf=fit_power_law(frequencies),
        heaps=fit_heaps(counts.first_positions, tokens),
        top_unigrams=_top(
            counts.vocabulary, NgramTable(order=1, ids=list(range(types)), counts=counts.unigram_counts), top
        ),
        top_bigrams=_top(counts.vocabulary, counts.bigrams, top),
        top_trigrams=_top(counts.vocabulary, counts.trigrams, top),
        word_length_distribution=counts.word_lengths,
        sentence_length_distribution=counts.sentence_lengths,
    )


def fit_heaps(first_positions: list[int] | NDArray[np.int64], tokens: int) -> HeapsFit | None:
    """Heaps' K and β from each type's first position in the token sequence; None below HEAPS_MIN_TOKENS.

    The types among the first t tokens are the types first seen before position t, so the whole
    growth curve follows from the first positions, and log-spaced t weigh every scale alike.
    """
    if tokens < HEAPS_MIN_TOKENS:
        return None
    firsts = np.sort(np.asarray(first_positions, dtype=np.int64))
    read = np.unique(np.geomspace(HEAPS_FIRST_TOKEN, tokens, HEAPS_POINTS).round().astype(np.int64))
    seen = np.searchsorted(firsts, read, side="left")
    beta, log_k = np.polyfit(np.log(read), np.log(seen), 1)
    return HeapsFit(k=float(np.exp(log_k)), beta=float(beta), points=len(read))


def _entropy_bits(frequencies: NDArray[np.int64]) -> float:
    """H = −Σ p·log2 p with p = c / N, computed as log2 N − Σ c·log2 c / N; 0 without tokens."""
    tokens = int(frequencies.sum())
    if not tokens:
        return 0.0
    return float(np.log2(tokens) - (frequencies * np.log2(frequencies)).sum() / tokens)


def _top(vocabulary: list[str], table: NgramTable, top: int) -> list[NgramFrequency]:
    """The `top` most frequent rows; a stable sort keeps ties in the table's (code-point) order."""
    counts = np.asarray(table.counts, dtype=np.int64)
    rows = np.asarray(table.ids, dtype=np.int64).reshape(-1, table.order)
    best = np.argsort(-counts, kind="stable")[:top]
    return [NgramFrequency(ngram=[vocabulary[i] for i in rows[row]], count=int(counts[row])) for row in best]
