"""A language's statistics from its counts: hand-checkable values, Heaps' fit, and an empty language."""

from __future__ import annotations

import math

import numpy as np
import pytest
from pydantic import BaseModel

from tasks.corpus.counting import PartialCounts, count_batch, merge_counts
from tasks.corpus.statistics import HeapsFit, LanguageStatistics, NgramFrequency, compute_statistics, fit_heaps
from tasks.corpus.zipf import PowerLawFit, fit_power_law


def test_an_empty_language_gives_zeros_and_none() -> None:
    """No documents: every count and ratio is 0, and what cannot be estimated is None."""
    statistics = compute_statistics(PartialCounts())
    assert statistics.model_dump() == {
        "documents": 0, "sentences": 0, "tokens": 0, "types": 0, "characters": 0, "character_types": 0,
        "type_token_ratio": 0.0, "mattr": None, "mattr_window": 500, "hapax_legomena": 0, "hapax_ratio": 0.0,
        "hapax_token_ratio": 0.0, "dis_legomena": 0, "dis_ratio": 0.0, "dis_token_ratio": 0.0, "entropy_bits": 0.0,
        "zipf": None, "heaps": None, "top_unigrams": [], "top_bigrams": [], "top_trigrams": [],
        "word_length_distribution": {}, "sentence_length_distribution": {},
    }  # fmt: skip


def test_counts_and_ratios_on_a_hand_checked_text() -> None:
    """ "a a b a c" and "d c": 7 tokens, 4 types; b and d once, c twice."""
    statistics = compute_statistics(count_batch([[["a", "a", "b", "a", "c"]], [["d", "c"]]], "cpu"))
    assert (statistics.documents, statistics.sentences, statistics.tokens, statistics.types) == (2, 2, 7, 4)
    assert (statistics.characters, statistics.character_types) == (7, 4)
    assert statistics.type_token_ratio == pytest.approx(4 / 7)
    assert (statistics.hapax_legomena, statistics.hapax_ratio, statistics.hapax_token_ratio) == (2, 0.5, 2 / 7)
    assert (statistics.dis_legomena, statistics.dis_ratio, statistics.dis_token_ratio) == (1, 0.25, 2 / 7)
    probabilities = [3 / 7, 1 / 7, 2 / 7, 1 / 7]
    assert statistics.entropy_bits == pytest.approx(-sum(p * math.log2(p) for p in probabilities))
    assert statistics.word_length_distribution == {1: 7}
    assert statistics.sentence_length_distribution == {2: 1, 5: 1}


@pytest.mark.parametrize(("window", "expected"), [(2, 5 / 6), (3, 4 / 6), (4, 2 / 4), (5, None)])
def test_mattr_on_a_hand_checked_text(window: int, expected: float | None) -> None:
    """ "a a b a": windows of 2 hold 1, 2, 2 types (5/6); of 3, 2 and 2 (4/6); of 4, 2 (2/4); none of 5."""
    statistics = compute_statistics(count_batch([[["a", "a"], ["b", "a"]]], "cpu", window=window))
    assert statistics.mattr == (None if expected is None else pytest.approx(expected))
    assert statistics.mattr_window == window


def test_mattr_windows_run_across_batches() -> None:
    """Counted in two batches and merged, "a a | b a" has the windows of the whole text."""
    merged = merge_counts(count_batch([[["a", "a"]]], "cpu", window=3), count_batch([[["b", "a"]]], "cpu", window=3))
    assert compute_statistics(merged).mattr == pytest.approx(4 / 6)


@pytest.mark.parametrize("types", [1, 7, 1000])
def test_the_entropy_of_a_uniform_distribution_is_log2_of_its_types(types: int) -> None:
    """Every type three times: H = log2 V."""
    tokens = [f"w{i}" for i in range(types)] * 3
    assert compute_statistics(count_batch([[tokens]], "cpu")).entropy_bits == pytest.approx(math.log2(types), abs=1e-9)


@pytest.mark.parametrize(("k", "beta"), [(10.0, 0.5), (30.0, 0.6), (5.0, 0.8)])
def test_heaps_fit_recovers_k_and_beta_from_a_synthetic_curve(k: float, beta: float) -> None:
    """Types first seen where K·t^β reaches 1, 2, 3…: K within 2 %, β within 0.005."""
    tokens = 10**6
    types = int(k * tokens**beta)
    first_positions = np.ceil((np.arange(1, types + 1) / k) ** (1 / beta)).astype(np.int64) - 1
    fit = fit_heaps(first_positions, tokens)
    assert fit is not None
    assert fit.k == pytest.approx(k, rel=0.02)
    assert fit.beta == pytest.approx(beta, abs=0.005)
    assert fit.points > 90


def test_heaps_needs_a_thousand_tokens() -> None:
    """Below 1,000 tokens there is no fit; a text of all-new tokens has K = 1 and β = 1."""
    assert fit_heaps(list(range(999)), 999) is None
    fit = fit_heaps(list(range(1000)), 1000)
    assert fit is not None
    assert fit.k == pytest.approx(1.0) and fit.beta == pytest.approx(1.0)


def test_top_ngrams_are_the_most_frequent_with_ties_in_code_point_order() -> None:
    """b 3, then a, c, é tied at 2 (é after c in code points); the top 3 keep a and c."""
    documents = [[["b", "é", "a", "c"], ["b", "a", "c", "é", "b"]]]
    statistics = compute_statistics(count_batch(documents, "cpu"), top=3)
    assert statistics.top_unigrams == [
        NgramFrequency(ngram=["b"], count=3),
        NgramFrequency(ngram=["a"], count=2),
        NgramFrequency(ngram=["c"], count=2),
    ]
    assert statistics.top_bigrams[0] == NgramFrequency(ngram=["a", "c"], count=2)
    assert [item.count for item in statistics.top_bigrams[1:]] == [1, 1]
    assert [item.ngram for item in statistics.top_trigrams] == [["a", "c", "é"], ["b", "a", "c"], ["b", "é", "a"]]


def test_zipf_is_fitted_to_the_types_frequencies() -> None:
    """Tokens whose type frequencies follow a power law: the report's fit is the fit of those frequencies."""
    rng = np.random.default_rng(13)
    frequencies = rng.zipf(2.0, 3000)
    tokens = [f"w{i}" for i, frequency in enumerate(frequencies) for _ in range(frequency)]
    statistics = compute_statistics(count_batch([[tokens]], "cpu"))
    assert statistics.zipf == fit_power_law(np.sort(frequencies))
    assert statistics.zipf is not None and statistics.zipf.alpha == pytest.approx(2.0, abs=0.1)


def test_statistics_survive_json() -> None:
    """report.json reads back equal, histogram keys as integers."""
    rng = np.random.default_rng(14)
    tokens = [f"w{int(i)}" for i in rng.zipf(1.5, 5000)]
    statistics = compute_statistics(count_batch([[tokens[:2500]], [tokens[2500:]]], "cpu"))
    assert statistics.heaps is not None and statistics.mattr is not None
    assert LanguageStatistics.model_validate_json(statistics.model_dump_json()) == statistics


@pytest.mark.parametrize("model", [LanguageStatistics, HeapsFit, NgramFrequency, PowerLawFit])
def test_every_field_has_its_definition(model: type[BaseModel]) -> None:
    """The docs are generated from the descriptions, so none may be missing."""
    assert model.__doc__
    assert [name for name, field in model.model_fields.items() if not field.description] == []
