"""Tokenisers: words, sentences and Chinese characters, per language."""

from __future__ import annotations

import pytest

from tasks.corpus.tokenizers import (
    CharacterTokenizer, ChineseTokenizer, EnglishTokenizer, FrenchTokenizer, GermanTokenizer, SanskritTokenizer,
    SpanishTokenizer, tokenizer_for,
)
from tasks.errors import InvalidParameterError
from tests.corpus.test_languages import GITA_DEVANAGARI, GITA_IAST

CHINESE = "我爱北京天安门。今天天气很好！"


@pytest.mark.parametrize(("code", "kind"), [
    ("fr", FrenchTokenizer), ("en", EnglishTokenizer), ("es", SpanishTokenizer),
    ("de", GermanTokenizer), ("sa", SanskritTokenizer), ("zh", ChineseTokenizer),
])
def test_each_language_has_its_class(code: str, kind: type) -> None:
    """The registry gives each code its own tokeniser class."""
    assert type(tokenizer_for(code)) is kind


def test_unknown_code_has_no_tokenizer() -> None:
    """An unknown code is refused with the known codes listed."""
    with pytest.raises(InvalidParameterError, match=r"^unknown language code\(s\) 'pt': expected codes among fr"):
        tokenizer_for("pt")


def test_only_chinese_counts_characters() -> None:
    """Chinese is a character tokeniser; the alphabetic languages are not."""
    assert isinstance(tokenizer_for("zh"), CharacterTokenizer)
    assert not isinstance(tokenizer_for("fr"), CharacterTokenizer)


@pytest.mark.parametrize(("code", "text", "words"), [
    ("fr", "Aujourd'hui, l'homme qu'il voit a un porte-monnaie, c'est-à-dire quelqu'un.",
     ["aujourd'hui", "l'", "homme", "qu'", "il", "voit", "a", "un", "porte-monnaie", "c'", "est-à-dire", "quelqu'un"]),
    ("en", "Don't say the well-known students' o'clock -- it's 'fine'.",
     ["don't", "say", "the", "well-known", "students", "o'clock", "it's", "fine"]),
    ("es", "El acuerdo franco-alemán, l'aigua y ¿qué?",
     ["el", "acuerdo", "franco-alemán", "l", "aigua", "y", "qué"]),
    ("de", "Das Max-Planck-Institut an der Straße: wie geht's?",
     ["das", "max-planck-institut", "an", "der", "strasse", "wie", "geht's"]),
])
def test_apostrophes_and_hyphens_follow_the_language(code: str, text: str, words: list[str]) -> None:
    """Inner apostrophes and hyphens stay or split as each language writes them; numbers are not words."""
    assert tokenizer_for(code).words(text) == words


def test_nfc_and_casefold() -> None:
    """A decomposed é is the composed one, capitals fold, and ’ is the ASCII apostrophe."""
    french = tokenizer_for("fr")
    assert french.words("E\u0301TE\u0301 l’été") == french.words("Été l'été") == ["été", "l'", "été"]


def test_soft_and_typographic_hyphens() -> None:
    """A soft hyphen vanishes and a typographic hyphen joins like '-'."""
    assert tokenizer_for("de").words("Kon\u00adstanz E\u2011Mail") == ["konstanz", "e-mail"]


def test_sanskrit_in_devanagari_and_iast_gives_the_same_words() -> None:
    """The Gita's opening gives the same IAST words from either script; verse numbers are not words."""
    sanskrit = tokenizer_for("sa")
    words = sanskrit.words(GITA_DEVANAGARI)
    assert words == sanskrit.words(GITA_IAST)
    assert words[:4] == ["dharmakṣetre", "kurukṣetre", "samavetā", "yuyutsavaḥ"]
    assert len(words) == 16


def test_sanskrit_avagraha_candrabindu_and_capitals() -> None:
    """Avagraha stays inside its word, candrabindu becomes m̐, and capital IAST folds."""
    sanskrit = tokenizer_for("sa")
    assert sanskrit.words("ततोऽहम् चँद्र") == sanskrit.words("Tato'ham cam̐dra") == ["tato'ham", "cam̐dra"]


def test_sanskrit_sentences_end_at_dandas() -> None:
    """। and ॥ end sentences in Devanagari, | and || in IAST, and a lone verse number is dropped."""
    sanskrit = tokenizer_for("sa")
    assert sanskrit.sentences(GITA_DEVANAGARI) == [
        "धर्मक्षेत्रे कुरुक्षेत्रे समवेता युयुत्सवः ।", "मामकाः पाण्डवाश्चैव किमकुर्वत सञ्जय ॥",
        "दृष्ट्वा तु पाण्डवानीकं व्यूढं दुर्योधनस्तदा ।", "आचार्यमुपसङ्गम्य राजा वचनमब्रवीत् ॥",
    ]
    assert len(sanskrit.sentences(GITA_IAST)) == 4


def test_chinese_words_and_characters() -> None:
    """jieba's dictionary words, without punctuation, and the Han characters of a fixed sentence."""
    chinese = ChineseTokenizer()
    assert chinese.words(CHINESE) == ["我", "爱", "北京", "天安门", "今天天气", "很", "好"]
    assert len(chinese.characters(CHINESE)) == 13


def test_chinese_skips_numbers_and_folds_latin() -> None:
    """Bare numbers are not words, Latin tokens fold, and only Han characters are characters."""
    chinese = ChineseTokenizer()
    assert chinese.words("你用GPU吗？2024年") == ["你", "用", "gpu", "吗", "年"]
    assert chinese.characters("你用GPU吗？2024年") == ["你", "用", "吗", "年"]


def test_chinese_sentences() -> None:
    """。！？ end Chinese sentences without a space after them."""
    assert tokenizer_for("zh").sentences(CHINESE + "你好吗？") == ["我爱北京天安门。", "今天天气很好！", "你好吗？"]


def test_latin_sentences() -> None:
    """. ! ? end a sentence before a space or the end, keeping closing quotes; 3.14 does not."""
    text = "Il fait beau ! Pourquoi pas ? Pi vaut 3.14 environ. « Oui. » He said \"Stop!\" Then"
    assert tokenizer_for("fr").sentences(text) == [
        "Il fait beau !", "Pourquoi pas ?", "Pi vaut 3.14 environ.", "« Oui. »", "He said \"Stop!\"", "Then",
    ]


def test_sentences_without_letters_are_dropped() -> None:
    """Pieces that are only numbers or punctuation are not sentences."""
    assert tokenizer_for("en").sentences("1. 2. ... Done.") == ["Done."]
