"""Words, sentences and, for Chinese, characters: one tokeniser class per language.

Every tokeniser applies NFC first, so a decomposed `é` counts as the composed one. Latin-script
languages (and Sanskrit, once in IAST) are then casefolded, and their typographic apostrophe
and hyphens become ASCII. A word is a run of Unicode letters and their marks (`\\p{L}\\p{M}`);
digits and punctuation are not words. Which apostrophes and hyphens stay inside a word depends
on the language and is said on its class.

Sentences end at `. ! ?` followed by a space or the end of the text (so `3.14` does not end one),
and at `。！？` and the dandas `। ॥` wherever they stand; pieces with no letter (a verse number
between dandas) are dropped. There is no list of abbreviations: `Dr. Watson` is two sentences.

Tokenisers take `str` pieces and keep no state between calls: the caller cuts a large text at
paragraph boundaries, where no word or sentence spans the cut, and adds up the counts, so no
document is ever held whole.
"""

from __future__ import annotations

import functools
import logging
import unicodedata
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import ClassVar, Protocol, runtime_checkable

import jieba
import regex
from indic_transliteration import sanscript

from tasks.corpus.languages import LanguageCode, require_known

# Sentence ends that need no space after them; `. ! ?` do.
_UNSPACED_ENDS = "。！？।॥"
# Closing quotes and brackets stay with the sentence they close; French may space its `»`.
_CLOSERS = r"""(?:["'”’»)\]」』]|[ \u00a0\u202f]+»)*"""
# Typographic apostrophes and hyphens to ASCII; soft hyphens (from PDFs) vanish.
_TYPOGRAPHY = str.maketrans({"’": "'", "\u2010": "-", "\u2011": "-", "\u00ad": None})
_LETTER = regex.compile(r"\p{L}")
_HAN = regex.compile(r"\p{Script=Han}")
_DEVANAGARI = regex.compile(r"\p{Script=Devanagari}")
_FRENCH_ELISION = regex.compile(r"(?:jusqu|lorsqu|puisqu|quoiqu|qu|[cdjlmnst])'")
# indic-transliteration writes the candrabindu as '~'; IAST writes m̐.
_CANDRABINDU = ("~", "m\u0310")


class Tokenizer(Protocol):
    """What every language's tokeniser does."""

    def words(self, text: str) -> list[str]:
        """The text's words, normalised as the language counts them."""
        ...

    def sentences(self, text: str) -> list[str]:
        """The text's sentences, in NFC and stripped, each with at least one letter."""
        ...


@runtime_checkable
class CharacterTokenizer(Tokenizer, Protocol):
    """A tokeniser for a script whose characters are counted too (Chinese)."""

    def characters(self, text: str) -> list[str]:
        """The text's characters of its own script, in order."""
        ...


def _words_joined_by(joiners: str) -> regex.Pattern[str]:
    """Letter runs that may be joined by single `joiners` inside a word, never at its edges."""
    return regex.compile(rf"[\p{{L}}\p{{M}}]+(?:[{regex.escape(joiners)}][\p{{L}}\p{{M}}]+)*")


def _sentence_pattern(unspaced_ends: str) -> regex.Pattern[str]:
    """Shortest pieces that end a sentence (or the text); `findall` then yields the sentences."""
    return regex.compile(rf"""
        .*?
        (?: [.!?]+ {_CLOSERS} (?=\s|\Z)
          | [{regex.escape(unspaced_ends)}]+ {_CLOSERS}
          | \Z )""", regex.VERBOSE | regex.DOTALL)


class _Alphabetic:
    """Shared by the languages written with spaces between words: normalise, then match words."""

    word_pattern: ClassVar[regex.Pattern[str]]
    sentence_pattern: ClassVar[regex.Pattern[str]] = _sentence_pattern(_UNSPACED_ENDS)

    def normalise(self, text: str) -> str:
        """NFC, ASCII apostrophes and hyphens, casefold."""
        return unicodedata.normalize("NFC", text).translate(_TYPOGRAPHY).casefold()

    def words(self, text: str) -> list[str]:
        """The text's words, normalised."""
        words: list[str] = self.word_pattern.findall(self.normalise(text))
        return words

    def sentences(self, text: str) -> list[str]:
        """The text's sentences, in NFC and stripped, each with at least one letter."""
        return _split_sentences(self.sentence_pattern, text)


class FrenchTokenizer(_Alphabetic):
    """French: inner hyphens and lexical apostrophes stay (`porte-monnaie`, `aujourd'hui`, `quelqu'un`).

    An elided article, pronoun or conjunction is a word of its own, apostrophe kept (`l'homme` ->
    `l'`, `homme`; `qu'il` -> `qu'`, `il`), as French corpora count them, so `homme` is counted
    the same with or without its article.
    """

    word_pattern = _words_joined_by("'-")

    def words(self, text: str) -> list[str]:
        """The text's words, elisions split off."""
        return [piece for word in super().words(text) for piece in _split_elision(word)]


class EnglishTokenizer(_Alphabetic):
    """English: inner apostrophes and hyphens stay (`don't`, `o'clock`, `well-known`); a trailing one goes."""

    word_pattern = _words_joined_by("'-")


class SpanishTokenizer(_Alphabetic):
    """Spanish: inner hyphens stay (`franco-alemán`); Spanish spelling has no apostrophe, so one splits."""

    word_pattern = _words_joined_by("-")


class GermanTokenizer(_Alphabetic):
    """German: inner hyphens stay (`Max-Planck-Institut`), and so do contracting apostrophes (`geht's`).

    Casefolding turns `ß` into `ss`, so `Straße` and Swiss `Strasse` are one word.
    """

    word_pattern = _words_joined_by("'-")


class SanskritTokenizer(_Alphabetic):
    """Sanskrit in Devanagari or IAST, counted in IAST so both spellings of a word are one word.

    Devanagari is transliterated to IAST (indic-transliteration) and then casefolded, so
    `धर्मक्षेत्रे` and `Dharmakṣetre` are both `dharmakṣetre`. IAST is chosen over SLP1 because
    it is what the researchers type and read, and because SLP1 is case-sensitive (`A` is ā),
    which casefolding would break. The avagraha (`ऽ`, IAST `'`) stays inside its word
    (`tato'ham`). Other romanisations (Harvard-Kyoto, ITRANS) are counted as written. Sentences
    also end at `|`, the danda of IAST e-texts.
    """

    word_pattern = _words_joined_by("'")
    sentence_pattern = _sentence_pattern(_UNSPACED_ENDS + "|")

    def normalise(self, text: str) -> str:
        """Devanagari to IAST, then as for the Latin-script languages."""
        text = unicodedata.normalize("NFC", text)
        if _DEVANAGARI.search(text):
            text = sanscript.transliterate(text, sanscript.DEVANAGARI, sanscript.IAST).replace(*_CANDRABINDU)
        return super().normalise(text)


class ChineseTokenizer:
    """Chinese: jieba's words (its dictionary ships in its package) and Han characters.

    A word is a jieba token with at least one letter, so punctuation, spaces and bare numbers
    are not words; Latin tokens inside Chinese text are casefolded. Characters are Han
    characters only.
    """

    sentence_pattern: ClassVar[regex.Pattern[str]] = _sentence_pattern(_UNSPACED_ENDS)

    def words(self, text: str) -> list[str]:
        """jieba's tokens that hold a letter, casefolded."""
        tokens = _segmenter().lcut(unicodedata.normalize("NFC", text))
        return [token.casefold() for token in tokens if _LETTER.search(token)]

    def characters(self, text: str) -> list[str]:
        """The Han characters of the text, in order."""
        characters: list[str] = _HAN.findall(unicodedata.normalize("NFC", text))
        return characters

    def sentences(self, text: str) -> list[str]:
        """The text's sentences, in NFC and stripped, each with at least one letter."""
        return _split_sentences(self.sentence_pattern, text)


_TOKENIZERS: Mapping[LanguageCode, Callable[[], Tokenizer]] = MappingProxyType({
    "fr": FrenchTokenizer, "en": EnglishTokenizer, "es": SpanishTokenizer,
    "de": GermanTokenizer, "sa": SanskritTokenizer, "zh": ChineseTokenizer,
})


def tokenizer_for(code: str) -> Tokenizer:
    """The tokeniser of a language code.

    Raises:
        InvalidParameterError: the code is not a known language.
    """
    (known,) = require_known([code])
    return _TOKENIZERS[known]()


class _Segmenter(Protocol):
    def lcut(self, sentence: str) -> list[str]: ...


@functools.cache
def _segmenter() -> _Segmenter:
    """One jieba segmenter per process; it loads its dictionary (about 0.7 s) on first use."""
    jieba.setLogLevel(logging.WARNING)  # otherwise it prints four lines to stderr on loading
    segmenter: _Segmenter = jieba.Tokenizer()
    return segmenter


def _split_elision(word: str) -> list[str]:
    elision = _FRENCH_ELISION.match(word)
    if elision is None or elision.end() == len(word):
        return [word]
    return [elision[0], word[elision.end():]]


def _split_sentences(pattern: regex.Pattern[str], text: str) -> list[str]:
    pieces = (piece.strip() for piece in pattern.findall(unicodedata.normalize("NFC", text)))
    return [piece for piece in pieces if _LETTER.search(piece)]
