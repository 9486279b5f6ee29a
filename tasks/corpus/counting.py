"""Mergeable counts of one language's tokens, computed with torch on the GPU or the CPU.

A batch's tokens become ids over the batch's sorted vocabulary. Everything after that is integer
tensor work (bincount, sort, unique, index_add), so a GPU and a CPU give identical counts; the
device only decides where the tensors live.

`merge_counts(a, b)` means "a's documents, then b's". Counts, lengths and characters are sums and
do not depend on that order. First occurrences (for Heaps' law) and MATTR windows follow it, and
the merge is exact: merging the partials of consecutive batches gives what counting all their
documents at once gives, so a crash or a rerun redoes one batch and nothing is approximated.

Size of a partial: one entry per type (string, count, first position), per distinct bigram and
trigram (n ids and a count) and per distinct character, plus 2 × (window − 1) tokens for MATTR.
It grows with the language's distinct n-grams, not with its tokens; exact top-N needs them all.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import TypeVar

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field, model_validator

from tasks.errors import InvalidParameterError

MATTR_WINDOW = 500
_KEY_LIMIT = 2**63
_CODE_POINTS = 0x110000
_Key = TypeVar("_Key", int, str)


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class NgramTable(_Frozen):
    """Distinct n-grams as rows of vocabulary ids, in lexicographic order, with their counts."""

    order: int = Field(ge=1, description="n: the number of tokens in each n-gram.")
    ids: list[int] = Field(default_factory=list, description="The rows' vocabulary ids, row after row.")
    counts: list[int] = Field(default_factory=list, description="How often each row occurs.")

    @model_validator(mode="after")
    def _rows_are_whole(self) -> NgramTable:
        if len(self.ids) != self.order * len(self.counts):
            raise ValueError(
                f"{self.order}-gram table: expected {self.order} ids per count, "
                f"got {len(self.ids)} ids for {len(self.counts)} counts"
            )
        return self


class PartialCounts(_Frozen):
    """Exact counts of one language over a run of consecutive batches; JSON in and out."""

    window: int = Field(default=MATTR_WINDOW, ge=2, description="MATTR window, in tokens.")
    documents: int = Field(default=0, ge=0, description="Documents counted.")
    vocabulary: list[str] = Field(default_factory=list, description="The distinct tokens, sorted by code point.")
    unigram_counts: list[int] = Field(default_factory=list, description="Occurrences of each vocabulary entry.")
    first_positions: list[int] = Field(
        default_factory=list, description="0-based position, in the token sequence, of each entry's first occurrence."
    )
    bigrams: NgramTable = Field(default_factory=lambda: NgramTable(order=2), description="Bigrams within sentences.")
    trigrams: NgramTable = Field(default_factory=lambda: NgramTable(order=3), description="Trigrams within sentences.")
    word_lengths: dict[int, int] = Field(default_factory=dict, description="Tokens by length in characters.")
    sentence_lengths: dict[int, int] = Field(default_factory=dict, description="Sentences by length in tokens.")
    characters: dict[str, int] = Field(default_factory=dict, description="Occurrences of each character in tokens.")
    window_count: int = Field(default=0, ge=0, description="MATTR windows that fit in the token sequence.")
    window_types: int = Field(default=0, ge=0, description="Distinct tokens in each MATTR window, summed.")
    head: list[str] = Field(default_factory=list, description="The first window − 1 tokens, for windows across merges.")
    tail: list[str] = Field(default_factory=list, description="The last window − 1 tokens, for windows across merges.")

    @model_validator(mode="after")
    def _columns_align(self) -> PartialCounts:
        sizes = {len(self.vocabulary), len(self.unigram_counts), len(self.first_positions)}
        if len(sizes) != 1:
            raise ValueError(
                f"vocabulary, unigram_counts and first_positions must have one length, got lengths {sorted(sizes)}"
            )
        return self

    @property
    def tokens(self) -> int:
        """Tokens counted."""
        return sum(self.unigram_counts)


def default_device() -> str:
    """'cuda' where torch sees a GPU, else 'cpu'."""
    return "cuda" if torch.cuda.is_available() else "cpu"


def count_batch(
    documents: Sequence[Sequence[Sequence[str]]], device: str | None = None, window: int = MATTR_WINDOW
) -> PartialCounts:
    """Count a batch of documents, each a list of sentences of word tokens, on `device` (default: the GPU if any).

    N-grams stay within sentences; the token sequence for first occurrences and MATTR runs through
    the documents in order, across sentence and document boundaries.
    """
    where = torch.device(device or default_device())
    if where.type == "cuda" and not torch.cuda.is_available():
        raise InvalidParameterError(
            "device 'cuda' cannot count here: torch sees no CUDA GPU; pass device='cpu' or None"
        )
    sentences = [sentence for document in documents for sentence in document]
    tokens = [token for sentence in sentences for token in sentence]
    vocabulary = sorted(set(tokens))
    index = dict(zip(vocabulary, range(len(vocabulary))))
    ids = torch.from_numpy(np.fromiter(map(index.__getitem__, tokens), dtype=np.int64, count=len(tokens))).to(where)
    sentence_sizes = torch.tensor([len(sentence) for sentence in sentences], dtype=torch.int64, device=where)
    unigrams = torch.bincount(ids, minlength=len(vocabulary))
    previous = _previous_positions(ids)
    first_positions = torch.empty_like(unigrams)
    is_first = previous < 0
    first_positions[ids[is_first]] = torch.arange(len(tokens), device=where)[is_first]
    sentence_of = torch.repeat_interleave(torch.arange(len(sentences), device=where), sentence_sizes)
    keep = len(tokens) - window + 1
    return PartialCounts(
        window=window,
        documents=len(documents),
        vocabulary=vocabulary,
        unigram_counts=unigrams.tolist(),
        first_positions=first_positions.tolist(),
        bigrams=_count_ngrams(ids, sentence_of, 2, len(vocabulary)),
        trigrams=_count_ngrams(ids, sentence_of, 3, len(vocabulary)),
        word_lengths=_histogram(
            torch.tensor([len(token) for token in vocabulary], dtype=torch.int64, device=where), unigrams
        ),
        sentence_lengths=_histogram(sentence_sizes, torch.ones_like(sentence_sizes)),
        characters=_count_characters(vocabulary, unigrams),
        window_count=max(0, keep),
        window_types=_window_types(previous, window, 0, keep - 1),
        head=tokens[: window - 1],
        tail=tokens[max(0, len(tokens) - window + 1) :],
    )


def merge_counts(first: PartialCounts, second: PartialCounts) -> PartialCounts:
    """The partial of `first`'s documents followed by `second`'s; exact and associative. Runs on the CPU."""
    if first.window != second.window:
        raise InvalidParameterError(
            f"cannot merge partials counted with MATTR windows {first.window} and {second.window}; "
            "count every batch with one window"
        )
    window = first.window
    vocabulary = sorted(set(first.vocabulary).union(second.vocabulary))
    index = dict(zip(vocabulary, range(len(vocabulary))))
    maps = [torch.tensor([index[token] for token in part.vocabulary], dtype=torch.int64) for part in (first, second)]
    unigrams = torch.zeros(len(vocabulary), dtype=torch.int64)
    first_positions = torch.zeros(len(vocabulary), dtype=torch.int64)
    for part, mapping, offset in ((second, maps[1], first.tokens), (first, maps[0], 0)):
        unigrams.index_add_(0, mapping, torch.tensor(part.unigram_counts, dtype=torch.int64))
        first_positions[mapping] = torch.tensor(part.first_positions, dtype=torch.int64) + offset
    across_count, across_types = _windows_across(first.tail, second.head, window)
    return PartialCounts(
        window=window,
        documents=first.documents + second.documents,
        vocabulary=vocabulary,
        unigram_counts=unigrams.tolist(),
        first_positions=first_positions.tolist(),
        bigrams=_merge_tables(first.bigrams, second.bigrams, maps, len(vocabulary)),
        trigrams=_merge_tables(first.trigrams, second.trigrams, maps, len(vocabulary)),
        word_lengths=_add(first.word_lengths, second.word_lengths),
        sentence_lengths=_add(first.sentence_lengths, second.sentence_lengths),
        characters=_add(first.characters, second.characters),
        window_count=first.window_count + second.window_count + across_count,
        window_types=first.window_types + second.window_types + across_types,
        head=(first.head + second.head)[: window - 1],
        tail=(first.tail + second.tail)[max(0, len(first.tail) + len(second.tail) - window + 1) :],
    )


def _windows_across(tail: list[str], head: list[str], window: int) -> tuple[int, int]:
    """MATTR windows that hold tokens of both `tail` and `head`: how many, and their distinct tokens summed."""
    joined = tail + head
    local = {token: number for number, token in enumerate(dict.fromkeys(joined))}
    first_start = max(0, len(tail) - window + 1)
    last_start = min(len(tail) - 1, len(joined) - window)
    previous = _previous_positions(torch.tensor([local[token] for token in joined], dtype=torch.int64))
    return max(0, last_start - first_start + 1), _window_types(previous, window, first_start, last_start)


def _previous_positions(ids: torch.Tensor) -> torch.Tensor:
    """For each position, where the same id last occurred before it; −1 at first occurrences."""
    order = torch.argsort(ids, stable=True)
    previous = torch.full_like(ids, -1)
    same = ids[order[1:]] == ids[order[:-1]]
    previous[order[1:][same]] = order[:-1][same]
    return previous


def _window_types(previous: torch.Tensor, window: int, first_start: int, last_start: int) -> int:
    """Distinct ids summed over the windows starting at first_start..last_start.

    Position i adds one to each window that holds it and not its previous occurrence p: starts in
    [max(i − window + 1, p + 1, first_start), min(i, last_start)].
    """
    positions = torch.arange(len(previous), device=previous.device)
    low = torch.maximum(torch.clamp(positions - window + 1, min=first_start), previous + 1)
    high = torch.clamp(positions, max=last_start)
    return int(torch.clamp(high - low + 1, min=0).sum())


def _count_rows(rows: torch.Tensor, weights: torch.Tensor | None, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Distinct rows of ids below `size`, in lexicographic order, with their summed weights (or counts).

    A row becomes one int64 key, column by column. Whenever the next column would overflow 2**63,
    the key so far is replaced by its rank among the distinct keys, which keeps the order, so any
    vocabulary size is safe; the ranks' tables turn the distinct keys back into rows.
    """
    keys, bound, tables = rows[:, 0], size, []
    for column in rows.unbind(1)[1:]:
        table = None
        if bound * size >= _KEY_LIMIT:
            table, keys = torch.unique(keys, return_inverse=True)
            bound = len(table)
        tables.append(table)
        keys, bound = keys * size + column, bound * size
    if weights is None:
        distinct, totals = torch.unique(keys, return_counts=True)
    else:
        distinct, inverse = torch.unique(keys, return_inverse=True)
        totals = torch.zeros(len(distinct), dtype=torch.int64, device=rows.device).index_add_(0, inverse, weights)
    columns = []
    for table in reversed(tables):
        columns.append(distinct % size)
        distinct = distinct // size if table is None else table[distinct // size]
    columns.append(distinct)
    return torch.stack(columns[::-1], dim=1), totals


def _count_ngrams(ids: torch.Tensor, sentence_of: torch.Tensor, order: int, size: int) -> NgramTable:
    """The n-grams of `order` tokens that lie within one sentence."""
    starts = len(ids) - order + 1
    if starts <= 0:
        return NgramTable(order=order)
    within = sentence_of[:starts] == sentence_of[order - 1 :]
    rows = torch.stack([ids[shift : shift + starts] for shift in range(order)], dim=1)[within]
    unique_rows, totals = _count_rows(rows, None, size)
    return NgramTable(order=order, ids=unique_rows.flatten().tolist(), counts=totals.tolist())


def _merge_tables(first: NgramTable, second: NgramTable, maps: list[torch.Tensor], size: int) -> NgramTable:
    """Two tables' rows moved to the merged vocabulary's ids, and counted together."""
    tables = zip((first, second), maps)
    rows = torch.cat(
        [mapping[torch.tensor(table.ids, dtype=torch.int64)].view(-1, table.order) for table, mapping in tables]
    )
    weights = torch.tensor(first.counts + second.counts, dtype=torch.int64)
    unique_rows, totals = _count_rows(rows, weights, size)
    return NgramTable(order=first.order, ids=unique_rows.flatten().tolist(), counts=totals.tolist())


def _histogram(values: torch.Tensor, weights: torch.Tensor) -> dict[int, int]:
    """{value: summed weight} over the values that occur."""
    if len(values) == 0:
        return {}
    totals = torch.zeros(int(values.max()) + 1, dtype=torch.int64, device=values.device).index_add_(0, values, weights)
    present = torch.nonzero(totals).flatten()
    return dict(zip(present.tolist(), totals[present].tolist()))


def _count_characters(vocabulary: list[str], unigrams: torch.Tensor) -> dict[str, int]:
    """Occurrences of each character, from the types' characters weighted by the types' counts."""
    encoded = "".join(vocabulary).encode("utf-32-le", errors="surrogatepass")
    code_points = torch.from_numpy(np.frombuffer(encoded, dtype=np.uint32).astype(np.int64)).to(unigrams.device)
    lengths = torch.tensor([len(token) for token in vocabulary], dtype=torch.int64, device=unigrams.device)
    weights = unigrams[torch.repeat_interleave(torch.arange(len(vocabulary), device=unigrams.device), lengths)]
    rows, totals = _count_rows(code_points[:, None], weights, _CODE_POINTS)
    return dict(zip(map(chr, rows.flatten().tolist()), totals.tolist()))


def _add(first: dict[_Key, int], second: dict[_Key, int]) -> dict[_Key, int]:
    """Two histograms summed, keys in order."""
    total = Counter(first)
    total.update(second)
    return dict(sorted(total.items()))
