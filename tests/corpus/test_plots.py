"""The report's PNGs decode at a plausible size, are reproducible, survive empty languages; JSD is right."""

from __future__ import annotations

import io
import math
import random

import numpy as np
import pytest
from matplotlib.image import imread

from tasks.corpus.counting import PartialCounts, count_batch
from tasks.corpus.languages import LanguageCode
from tasks.corpus.plots import (
    DIVERGENCE_FILE,
    HEAPS_FILE,
    MEASURES_FILE,
    ZIPF_FILE,
    character_trigrams,
    divergence_matrix,
    jensen_shannon_divergence,
    write_plots,
)
from tasks.corpus.statistics import compute_statistics
from tasks.errors import InvalidParameterError

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def zipfian_documents(stem: str, seed: int, documents: int) -> list[list[list[str]]]:
    """Documents of 5 sentences of 40 words drawn with weights 1/rank from 2,000 words."""
    rng = random.Random(seed)
    words = [f"{stem}{index}" for index in range(2000)]
    weights = [1 / rank for rank in range(1, 2001)]
    return [[rng.choices(words, weights, k=40) for _ in range(5)] for _ in range(documents)]


@pytest.fixture(scope="module")
def counts() -> dict[LanguageCode, PartialCounts]:
    """Three languages of 1,200 to 8,000 tokens, a one-sentence one, and one without documents."""
    return {
        "fr": count_batch(zipfian_documents("le", 1, 40), "cpu"),
        "en": count_batch(zipfian_documents("th", 2, 12), "cpu"),
        "es": count_batch(zipfian_documents("el", 3, 6), "cpu"),
        "de": PartialCounts(),
        "zh": count_batch([[["中国", "人"], ["的"]]], "cpu"),
    }


@pytest.fixture(scope="module")
def plots(counts: dict[LanguageCode, PartialCounts]) -> dict[str, bytes]:
    """Every figure, drawn once for the module."""
    return write_plots(counts, {code: compute_statistics(language) for code, language in counts.items()})


def test_every_figure_is_drawn_in_report_order(plots: dict[str, bytes]) -> None:
    """Zipf, Heaps, the measures and the heatmap, under their file names."""
    assert list(plots) == [ZIPF_FILE, HEAPS_FILE, MEASURES_FILE, DIVERGENCE_FILE]


@pytest.mark.parametrize("name", [ZIPF_FILE, HEAPS_FILE, MEASURES_FILE, DIVERGENCE_FILE])
def test_a_figure_is_a_png_of_plausible_size(plots: dict[str, bytes], name: str) -> None:
    """PNG signature, decodes, at least 400 × 400 px, between 5 KB and 2 MB."""
    data = plots[name]
    assert data.startswith(PNG_SIGNATURE)
    assert 5_000 < len(data) < 2_000_000
    height, width, channels = imread(io.BytesIO(data), format="png").shape
    assert height >= 400 and width >= 400 and channels in (3, 4)


def test_figures_are_byte_for_byte_reproducible(
    counts: dict[LanguageCode, PartialCounts], plots: dict[str, bytes]
) -> None:
    """The same counts draw the same bytes: no timestamp, no software version in the PNG."""
    again = write_plots(counts, {code: compute_statistics(language) for code, language in counts.items()})
    assert again == plots
    assert all(b"Matplotlib" not in data for data in plots.values())


def test_no_language_with_documents_still_draws_every_figure() -> None:
    """Only empty languages: four valid PNGs, no crash."""
    empty: dict[LanguageCode, PartialCounts] = {"de": PartialCounts(), "sa": PartialCounts()}
    drawn = write_plots(empty, {code: compute_statistics(language) for code, language in empty.items()})
    assert len(drawn) == 4 and all(data.startswith(PNG_SIGNATURE) for data in drawn.values())


def test_character_trigrams_pad_each_word_and_weigh_it_by_its_count() -> None:
    """ "ab" three times gives ' ab' and 'ab ' three times; "x" once gives ' x '."""
    trigrams = character_trigrams(count_batch([[["ab", "x", "ab", "ab"]]], "cpu"))
    assert trigrams == {" ab": 3, "ab ": 3, " x ": 1}


def test_the_divergence_of_identical_distributions_is_zero() -> None:
    """Proportional counts are the same distribution."""
    assert jensen_shannon_divergence({"a": 1, "b": 3}, {"a": 2, "b": 6}) == 0.0


def test_the_divergence_of_disjoint_distributions_is_one_bit() -> None:
    """No shared 3-gram: the maximum, 1 in base 2."""
    assert jensen_shannon_divergence({"a": 5, "b": 1}, {"c": 2}) == 1.0


def test_the_divergence_matches_a_hand_computed_value() -> None:
    """P = (1, 0), Q = (½, ½), M = (¾, ¼): ½·log2(4/3) + ¼·log2(2/3) + ¼·log2 2 ≈ 0.3113."""
    expected = 0.5 * math.log2(4 / 3) + 0.25 * math.log2(2 / 3) + 0.25
    assert jensen_shannon_divergence({"a": 1}, {"a": 1, "b": 1}) == pytest.approx(expected)
    assert expected == pytest.approx(0.3113, abs=1e-4)


def test_the_divergence_refuses_an_empty_distribution() -> None:
    """No counts, no distribution; the message says what to do."""
    with pytest.raises(InvalidParameterError, match="needs counts on both sides.*leave languages without tokens out"):
        jensen_shannon_divergence({}, {"a": 1})


def test_the_divergence_matrix_is_symmetric_with_blanks_for_empty_languages(
    counts: dict[LanguageCode, PartialCounts],
) -> None:
    """Symmetric, 0 on the diagonal, within [0, 1], NaN in an empty language's row and column."""
    codes = list(counts)
    matrix = divergence_matrix({code: character_trigrams(counts[code]) for code in codes})
    empty = codes.index("de")
    assert np.isnan(matrix[empty]).all() and np.isnan(matrix[:, empty]).all()
    present = np.delete(np.delete(matrix, empty, axis=0), empty, axis=1)
    assert np.array_equal(present, present.T)
    assert (np.diag(present) == 0).all()
    assert ((present >= 0) & (present <= 1)).all()
    assert matrix[codes.index("fr"), codes.index("zh")] == 1.0  # Han words share no 3-gram with Latin ones
