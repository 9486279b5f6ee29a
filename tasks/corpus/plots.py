"""The report's figures, as PNG bytes, drawn with matplotlib's Agg canvas and no pyplot.

Each figure is its own `Figure` on a `FigureCanvasAgg`, so no global state is touched and plots
may be drawn on several threads at once. PNGs are saved without the `Software` text chunk and
Agg writes no timestamp, so the same data, matplotlib and FreeType give the same bytes.
A language with no tokens is left out of the curves and named in a note instead; in the
heatmap its row and column are blank.
"""

from __future__ import annotations

import io
from collections import Counter
from collections.abc import Mapping

import matplotlib
import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from numpy.typing import NDArray

from tasks.corpus.counting import PartialCounts
from tasks.corpus.languages import KNOWN_LANGUAGES, LanguageCode
from tasks.corpus.report import language_label
from tasks.corpus.statistics import HEAPS_FIRST_TOKEN, LanguageStatistics, fit_heaps
from tasks.errors import InvalidParameterError

ZIPF_FILE = "zipf-rank-frequency.png"
HEAPS_FILE = "heaps-vocabulary-growth.png"
MEASURES_FILE = "lexical-measures.png"
DIVERGENCE_FILE = "character-trigram-divergence.png"
# Marks a word's start and end in its character 3-grams; tokens hold no spaces.
WORD_BOUNDARY = " "
# Points drawn per curve, log-spaced: enough for a smooth line at any corpus size.
CURVE_POINTS = 400
DPI = 100


def zipf_plot(counts: Mapping[LanguageCode, PartialCounts]) -> bytes:
    """Rank–frequency curves on log-log axes, one line per language."""
    figure, axes = _figure((8.0, 5.5))
    for code, language in _with_tokens(counts).items():
        frequencies = np.sort(np.asarray(language.unigram_counts, dtype=np.int64))[::-1]
        ranks = _log_spaced(len(frequencies))
        axes.loglog(ranks, frequencies[ranks - 1], color=_colour(code), label=language_label(code))
    _finish(axes, counts, "Zipf: word frequency against frequency rank",
            "rank (1 = most frequent word)", "frequency (occurrences)")
    return _png(figure)


def heaps_plot(counts: Mapping[LanguageCode, PartialCounts]) -> bytes:
    """Types seen against tokens read, on log-log axes, with Heaps' fit dashed where there is one."""
    figure, axes = _figure((8.0, 5.5))
    for code, language in _with_tokens(counts).items():
        read = _log_spaced(language.tokens)
        seen = np.searchsorted(np.sort(np.asarray(language.first_positions, dtype=np.int64)), read, side="left")
        fit = fit_heaps(language.first_positions, language.tokens)
        label = language_label(code) if fit is None else f"{language_label(code)}, β = {fit.beta:.2f}"
        axes.loglog(read, seen, color=_colour(code), label=label)
        if fit is not None:
            fitted = read[read >= HEAPS_FIRST_TOKEN]
            axes.loglog(fitted, fit.k * fitted.astype(np.float64) ** fit.beta, color=_colour(code), linestyle="--")
    _finish(axes, counts, "Heaps: vocabulary growth (dashed: types = K · tokens^β fitted)",
            "tokens read (word tokens)", "types seen (distinct words)")
    return _png(figure)


def measures_plot(statistics: Mapping[LanguageCode, LanguageStatistics]) -> bytes:
    """TTR and MATTR bars on a ratio axis, and entropy bars on an axis of its own (bits per token)."""
    figure = Figure(figsize=(10.0, 5.0), dpi=DPI, layout="constrained")
    FigureCanvasAgg(figure)
    ratios, entropy = figure.subplots(1, 2, width_ratios=[2, 1])
    codes = list(statistics)
    places = np.arange(len(codes), dtype=np.float64)
    width = 0.4
    # Greys, so the measures are not mistaken for the languages' colours.
    ratios.bar(places - width / 2, [statistics[code].type_token_ratio for code in codes], width, color="0.3",
               label="TTR (V / N)")
    windows = sorted({statistics[code].mattr_window for code in codes})
    mattr = [statistics[code].mattr for code in codes]
    ratios.bar(places + width / 2, [value or 0.0 for value in mattr], width, color="0.65",
               label=f"MATTR ({', '.join(map(str, windows))}-token windows)")
    for place, value in zip(places, mattr):
        if value is None:
            ratios.text(place + width / 2, 0.02, "n/a", ha="center", va="bottom", rotation=90, fontsize=8)
    # Headroom above 1 keeps the legend clear of a TTR of 1 (a tiny language).
    ratios.set(ylim=(0.0, 1.15), ylabel="ratio (distinct tokens / tokens)", xlabel="language",
               title="Lexical diversity")
    ratios.legend(loc="upper center", ncols=2)
    entropy.bar(places, [statistics[code].entropy_bits for code in codes], 0.6,
                color=[_colour(code) for code in codes])
    entropy.set(ylabel="entropy (bits per token)", xlabel="language", title="Unigram entropy")
    labels = [language_label(code) + ("" if statistics[code].tokens else "\nno documents") for code in codes]
    for axes in (ratios, entropy):
        axes.set_xticks(places, labels, rotation=30, ha="right")
        axes.grid(axis="y", alpha=0.3)
    return _png(figure)


def divergence_heatmap(counts: Mapping[LanguageCode, PartialCounts]) -> bytes:
    """Jensen–Shannon divergence (bits) between the languages' character 3-gram distributions, annotated."""
    codes = list(counts)
    matrix = divergence_matrix({code: character_trigrams(counts[code]) for code in codes})
    figure, axes = _figure((7.5, 6.5))
    colours = matplotlib.colormaps["viridis"].with_extremes(bad="0.9")
    image = axes.imshow(np.ma.masked_invalid(matrix), vmin=0.0, vmax=1.0, cmap=colours)
    figure.colorbar(image, ax=axes, label="Jensen–Shannon divergence (bits; 0 = same, 1 = disjoint)")
    labels = [language_label(code) + ("" if counts[code].tokens else "\nno documents") for code in codes]
    axes.set_xticks(range(len(codes)), labels, rotation=30, ha="right")
    axes.set_yticks(range(len(codes)), labels)
    for (row, column), value in np.ndenumerate(matrix):
        text = "–" if np.isnan(value) else f"{value:.3f}"
        axes.text(column, row, text, ha="center", va="center", color="white" if value < 0.6 else "black")
    axes.set(title="Character 3-gram distributions: Jensen–Shannon divergence", xlabel="language", ylabel="language")
    return _png(figure)


def write_plots(
    counts: Mapping[LanguageCode, PartialCounts], statistics: Mapping[LanguageCode, LanguageStatistics]
) -> dict[str, bytes]:
    """Every figure of the report: file name -> PNG bytes, in the order the report shows them."""
    return {
        ZIPF_FILE: zipf_plot(counts),
        HEAPS_FILE: heaps_plot(counts),
        MEASURES_FILE: measures_plot(statistics),
        DIVERGENCE_FILE: divergence_heatmap(counts),
    }


def character_trigrams(counts: PartialCounts) -> Counter[str]:
    """Character 3-grams of each word padded with WORD_BOUNDARY, weighted by the word's count.

    A word of n characters gives n 3-grams, so one-letter words (Chinese characters) count too.
    """
    trigrams: Counter[str] = Counter()
    for word, count in zip(counts.vocabulary, counts.unigram_counts):
        padded = f"{WORD_BOUNDARY}{word}{WORD_BOUNDARY}"
        for start in range(len(word)):
            trigrams[padded[start : start + 3]] += count
    return trigrams


def jensen_shannon_divergence(first: Mapping[str, int], second: Mapping[str, int]) -> float:
    """JSD in bits, between the distributions two sets of counts give: 0 when equal, 1 when disjoint.

    Raises:
        InvalidParameterError: one of the two has no counts, so no distribution.
    """
    keys = sorted(first.keys() | second.keys())
    p = np.asarray([first.get(key, 0) for key in keys], dtype=np.float64)
    q = np.asarray([second.get(key, 0) for key in keys], dtype=np.float64)
    if not (p.sum() > 0 and q.sum() > 0):
        raise InvalidParameterError(
            f"Jensen–Shannon divergence needs counts on both sides, got totals {p.sum():g} and {q.sum():g}; "
            "leave languages without tokens out"
        )
    p, q = p / p.sum(), q / q.sum()
    middle = (p + q) / 2
    return float(np.clip((_kullback_leibler(p, middle) + _kullback_leibler(q, middle)) / 2, 0.0, 1.0))


def divergence_matrix(distributions: Mapping[LanguageCode, Mapping[str, int]]) -> NDArray[np.float64]:
    """Pairwise JSD in the mapping's order; symmetric, 0 on the diagonal, NaN for a language without counts."""
    codes = list(distributions)
    present = [sum(distributions[code].values()) > 0 for code in codes]
    matrix = np.full((len(codes), len(codes)), np.nan)
    for row, first in enumerate(codes):
        for column in range(row, len(codes)):
            if present[row] and present[column]:
                value = jensen_shannon_divergence(distributions[first], distributions[codes[column]])
                matrix[row, column] = matrix[column, row] = value
    return matrix


def _kullback_leibler(p: NDArray[np.float64], q: NDArray[np.float64]) -> float:
    """KL(p ‖ q) in bits, over the support of p (q > 0 wherever p > 0 here)."""
    support = p > 0
    return float((p[support] * np.log2(p[support] / q[support])).sum())


def _figure(size: tuple[float, float]) -> tuple[Figure, Axes]:
    figure = Figure(figsize=size, dpi=DPI, layout="constrained")
    FigureCanvasAgg(figure)
    return figure, figure.subplots()


def _png(figure: Figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", metadata={"Software": None})
    return buffer.getvalue()


def _with_tokens(counts: Mapping[LanguageCode, PartialCounts]) -> dict[LanguageCode, PartialCounts]:
    return {code: language for code, language in counts.items() if language.tokens}


def _finish(axes: Axes, counts: Mapping[LanguageCode, PartialCounts], title: str, xlabel: str, ylabel: str) -> None:
    """Title, axis labels, grid, and a legend that names the languages left out for want of documents."""
    axes.set(title=title, xlabel=xlabel, ylabel=ylabel)
    axes.grid(which="major", alpha=0.3)
    empty = [language_label(code) for code, language in counts.items() if not language.tokens]
    note = f"no documents: {', '.join(empty)}" if empty else None
    if len(empty) < len(counts):
        axes.legend(title=note, loc="best")
    else:
        axes.text(0.5, 0.5, "no documents in any language", ha="center", va="center", transform=axes.transAxes)


def _log_spaced(last: int) -> NDArray[np.int64]:
    """Up to CURVE_POINTS distinct integers from 1 to `last`, evenly spaced on a log scale."""
    points: NDArray[np.int64] = np.unique(np.geomspace(1, last, CURVE_POINTS).round().astype(np.int64))
    return points


def _colour(code: LanguageCode) -> str:
    """One colour per language, the same in every figure and every week."""
    return f"C{KNOWN_LANGUAGES.index(code)}"
