"""Counts from torch match a plain collections.Counter computation, and partials merge exactly."""

from __future__ import annotations

import random
from collections import Counter

import pytest
import torch
from pydantic import ValidationError

from tasks.corpus.counting import NgramTable, PartialCounts, _count_rows, count_batch, merge_counts
from tasks.errors import InvalidParameterError

Documents = list[list[list[str]]]
WORDS = ["le", "chat", "dort", "été", "naïve", "the", "a", "ab", "b", "日本", "語", "धर्म", "x" * 30, "Ünïcödé"]


def random_documents(seed: int, count: int) -> Documents:
    """Documents of 0–5 sentences of 0–12 tokens; a small vocabulary, so n-grams repeat."""
    rng = random.Random(seed)
    return [
        [[rng.choice(WORDS) for _ in range(rng.randint(0, 12))] for _ in range(rng.randint(0, 5))] for _ in range(count)
    ]


def plain_counts(documents: Documents, window: int) -> dict[str, object]:
    """The same quantities, written plainly: flat lists, then collections.Counter."""
    sentences = [sentence for document in documents for sentence in document]
    tokens = [token for sentence in sentences for token in sentence]
    first_positions: dict[str, int] = {}
    for position, token in enumerate(tokens):
        first_positions.setdefault(token, position)
    windows = [len(set(tokens[start : start + window])) for start in range(len(tokens) - window + 1)]
    return {
        "unigrams": Counter(tokens),
        "bigrams": Counter(tuple(s[i : i + 2]) for s in sentences for i in range(len(s) - 1)),
        "trigrams": Counter(tuple(s[i : i + 3]) for s in sentences for i in range(len(s) - 2)),
        "word_lengths": Counter(len(token) for token in tokens),
        "sentence_lengths": Counter(len(sentence) for sentence in sentences),
        "characters": Counter("".join(tokens)),
        "first_positions": first_positions,
        "windows": (len(windows), sum(windows)),
        "head": tokens[: window - 1],
        "tail": tokens[max(0, len(tokens) - window + 1) :],
    }


def table_as_counter(partial: PartialCounts, table: NgramTable) -> Counter[tuple[str, ...]]:
    rows = [table.ids[row * table.order : (row + 1) * table.order] for row in range(len(table.counts))]
    return Counter({tuple(partial.vocabulary[i] for i in row): count for row, count in zip(rows, table.counts)})


def observed(partial: PartialCounts) -> dict[str, object]:
    return {
        "unigrams": Counter(dict(zip(partial.vocabulary, partial.unigram_counts))),
        "bigrams": table_as_counter(partial, partial.bigrams),
        "trigrams": table_as_counter(partial, partial.trigrams),
        "word_lengths": Counter(partial.word_lengths),
        "sentence_lengths": Counter(partial.sentence_lengths),
        "characters": Counter(partial.characters),
        "first_positions": dict(zip(partial.vocabulary, partial.first_positions)),
        "windows": (partial.window_count, partial.window_types),
        "head": partial.head,
        "tail": partial.tail,
    }


@pytest.mark.parametrize("window", [2, 7, 500])
def test_counts_match_a_plain_counter(window: int) -> None:
    """Unigrams, bigrams, trigrams, lengths, characters, first positions and MATTR windows match Counter."""
    documents = random_documents(seed=1, count=80)
    assert observed(count_batch(documents, "cpu", window=window)) == plain_counts(documents, window)


def test_ngrams_stay_within_sentences() -> None:
    """No bigram or trigram joins the end of one sentence to the start of the next."""
    partial = count_batch([[["a", "b"], ["c", "d"]], [["e"]]], "cpu")
    assert table_as_counter(partial, partial.bigrams) == Counter({("a", "b"): 1, ("c", "d"): 1})
    assert partial.trigrams == NgramTable(order=3)


def test_vocabulary_is_sorted_and_ngram_rows_are_in_lexicographic_order() -> None:
    """Ids are ranks in code-point order, so equal content gives equal partials."""
    partial = count_batch(random_documents(seed=2, count=40), "cpu")
    assert partial.vocabulary == sorted(set(partial.vocabulary))
    rows = [tuple(partial.trigrams.ids[i : i + 3]) for i in range(0, len(partial.trigrams.ids), 3)]
    assert rows == sorted(set(rows))


@pytest.mark.parametrize("sizes", [[1, 1, 58], [3, 2, 55], [20, 20, 20], [0, 0, 60], [59, 0, 1], [30, 29, 1]])
def test_merging_consecutive_batches_equals_counting_them_at_once(sizes: list[int]) -> None:
    """Both groupings of the merge give exactly the partial of all documents, MATTR and first positions included."""
    documents = random_documents(seed=3, count=sum(sizes))
    starts = [sum(sizes[:i]) for i in range(len(sizes))]
    parts = [count_batch(documents[start : start + size], "cpu", window=7) for start, size in zip(starts, sizes)]
    whole = count_batch(documents, "cpu", window=7)
    assert merge_counts(merge_counts(parts[0], parts[1]), parts[2]) == whole
    assert merge_counts(parts[0], merge_counts(parts[1], parts[2])) == whole


def test_counts_do_not_depend_on_merge_order() -> None:
    """Swapping batches changes only what follows token order: first positions and MATTR windows."""
    first, second = count_batch(random_documents(4, 30), "cpu"), count_batch(random_documents(5, 30), "cpu")
    forward, backward = merge_counts(first, second), merge_counts(second, first)
    order_free = {
        "documents",
        "vocabulary",
        "unigram_counts",
        "bigrams",
        "trigrams",
        "word_lengths",
        "sentence_lengths",
        "characters",
    }
    assert forward.model_dump(include=order_free) == backward.model_dump(include=order_free)
    assert forward.first_positions != backward.first_positions


def test_an_empty_partial_is_the_identity_of_merge() -> None:
    """An empty batch counts nothing, and merging it on either side changes nothing."""
    empty = count_batch([], "cpu")
    assert empty == PartialCounts() and empty.tokens == 0
    partial = count_batch(random_documents(6, 20), "cpu")
    assert merge_counts(empty, partial) == partial == merge_counts(partial, empty)


def test_documents_and_sentences_without_tokens_are_counted() -> None:
    """An empty document adds to documents; an empty sentence to sentences of length 0."""
    partial = count_batch([[], [[]], [["a"]]], "cpu")
    assert (partial.documents, partial.sentence_lengths, partial.tokens) == (3, {0: 1, 1: 1}, 1)


def test_a_partial_survives_json() -> None:
    """A checkpoint written as JSON reads back equal, integer histogram keys included."""
    partial = count_batch(random_documents(7, 20), "cpu")
    assert PartialCounts.model_validate_json(partial.model_dump_json()) == partial


def test_partials_with_different_windows_do_not_merge() -> None:
    """MATTR sums over windows of different sizes cannot be added; the message says what to do."""
    with pytest.raises(InvalidParameterError, match="MATTR windows 500 and 7; count every batch with one window"):
        merge_counts(PartialCounts(), PartialCounts(window=7))


def test_a_partial_whose_columns_disagree_is_refused() -> None:
    """A checkpoint whose columns do not line up fails validation and names the lengths."""
    with pytest.raises(ValidationError, match=r"must have one length, got lengths \[1, 2\]"):
        PartialCounts(vocabulary=["a", "b"], unigram_counts=[1, 1], first_positions=[0])
    with pytest.raises(ValidationError, match="expected 2 ids per count, got 3 ids for 1 counts"):
        NgramTable(order=2, ids=[0, 1, 2], counts=[1])


def test_cuda_is_refused_where_torch_sees_no_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    """device='cuda' without a GPU fails before any work, naming the way out."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(InvalidParameterError, match="device 'cuda' cannot count here: torch sees no CUDA GPU"):
        count_batch([[["a"]]], "cuda")


def test_rows_of_ids_too_large_for_one_key_are_counted_exactly() -> None:
    """Ids near 2**40 overflow a three-column key; ranks replace the key and the rows come back intact."""
    rng = random.Random(8)
    size = 2**40
    choices = [0, 1, size - 2, size - 1, 12345678901]
    rows = [[rng.choice(choices) for _ in range(3)] for _ in range(500)]
    unique_rows, totals = _count_rows(torch.tensor(rows), None, size)
    assert dict(zip(map(tuple, unique_rows.tolist()), totals.tolist())) == Counter(map(tuple, rows))
    assert unique_rows.tolist() == sorted(map(list, set(map(tuple, rows))))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU: torch sees none")
def test_the_gpu_counts_what_the_cpu_counts() -> None:
    """On a real GPU: every field of the partial equals the CPU's."""
    documents = random_documents(seed=9, count=2000)
    assert count_batch(documents, "cuda", window=50) == count_batch(documents, "cpu", window=50)
