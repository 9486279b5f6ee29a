"""A document's language: from its folder, or detected offline; and the refusal of unknown codes."""

from __future__ import annotations

import pytest

from tasks.corpus.languages import (
    DETECTION_SAMPLE_CHARS, KNOWN_LANGUAGES, Detection, detect_language, language_from_folder, require_known,
    require_script_map,
)
from tasks.errors import InvalidParameterError

GITA_DEVANAGARI = ("धर्मक्षेत्रे कुरुक्षेत्रे समवेता युयुत्सवः । मामकाः पाण्डवाश्चैव किमकुर्वत सञ्जय ॥ १ ॥ "
                   "दृष्ट्वा तु पाण्डवानीकं व्यूढं दुर्योधनस्तदा । आचार्यमुपसङ्गम्य राजा वचनमब्रवीत् ॥ २ ॥")
GITA_IAST = ("dharmakṣetre kurukṣetre samavetā yuyutsavaḥ | māmakāḥ pāṇḍavāścaiva kimakurvata sañjaya || 1 || "
             "dṛṣṭvā tu pāṇḍavānīkaṃ vyūḍhaṃ duryodhanastadā | ācāryamupasaṅgamya rājā vacanamabravīt || 2 ||")
SAMPLES = {
    "fr": "Aujourd'hui, l'homme marche dans la rue avec son porte-monnaie. Il fait beau et les enfants jouent "
          "dans le jardin. Pourquoi ne viendrais-tu pas avec nous ?",
    "en": "Today the man walks down the street with his wallet. The weather is fine and the children are "
          "playing in the garden. Why don't you come with us?",
    "es": "Hoy el hombre camina por la calle con su cartera. Hace buen tiempo y los niños juegan en el jardín. "
          "¿Por qué no vienes con nosotros?",
    "de": "Heute geht der Mann mit seiner Geldbörse die Straße entlang. Das Wetter ist schön und die Kinder "
          "spielen im Garten. Warum kommst du nicht mit uns?",
    "sa": GITA_DEVANAGARI,
    "zh": "我爱北京天安门。今天天气很好，孩子们在花园里玩耍。你为什么不和我们一起来？",
}
ITALIAN = ("Oggi l'uomo cammina per la strada con il suo portafoglio. Fa bel tempo e i bambini giocano in "
           "giardino. Perché non vieni con noi?")


@pytest.mark.parametrize("code", KNOWN_LANGUAGES)
def test_detects_each_language(code: str) -> None:
    """Each language's sample is detected as that language, with the evidence as its reason."""
    detection = detect_language(SAMPLES[code], KNOWN_LANGUAGES)
    assert detection.code == code, detection.reason
    assert detection.reason


def test_devanagari_means_sanskrit() -> None:
    """Devanagari is Sanskrit by the script map, even Hindi that py3langid would call Hindi."""
    hindi = "मेरा नाम राम है और मैं दिल्ली में रहता हूँ। आज मौसम बहुत अच्छा है।"
    for text in (GITA_DEVANAGARI, hindi):
        assert detect_language(text, KNOWN_LANGUAGES) == Detection(
            "sa", "Devanagari script (100% of letters) means sa in the script map")


def test_iast_means_sanskrit() -> None:
    """Latin text dense in IAST letters is Sanskrit, capitals and decomposed marks included."""
    assert detect_language(GITA_IAST, KNOWN_LANGUAGES).code == "sa"
    decomposed_capitals = ("DHARMAKS\u0323ETRE KURUKS\u0323ETRE SAMAVETA\u0304 "
                           "YUYUTSAVAH\u0323 MA\u0304MAKA\u0304H\u0323 |")
    assert detect_language(decomposed_capitals, KNOWN_LANGUAGES).code == "sa"


def test_english_about_sanskrit_stays_english() -> None:
    """A few IAST names in English prose stay under the IAST share, so py3langid decides."""
    text = ("The Mahābhārata is a long epic. Its sixth book contains the Bhagavad Gītā, a dialogue between "
            "Arjuna and his charioteer Kṛṣṇa about duty, action and devotion.")
    assert detect_language(text, KNOWN_LANGUAGES).code == "en"


def test_short_text_gets_no_language() -> None:
    """A text with too few letters gets None and says how many it has."""
    assert detect_language("Hi there! 42", KNOWN_LANGUAGES) == Detection(
        None, "too short to detect: 7 letters, at least 20 needed")


def test_ambiguous_text_gets_no_language() -> None:
    """Two languages in one short text leave py3langid unsure, which gives None and the scores."""
    detection = detect_language("The cat sleeps. Le chat dort.", KNOWN_LANGUAGES)
    assert detection.code is None
    assert detection.reason.startswith("ambiguous: py3langid gives ")
    assert detection.reason.endswith("0.75 or more needed")


def test_mixed_scripts_get_no_language() -> None:
    """Chinese and English in equal parts is no language, with each script's share in the reason."""
    text = "我爱北京天安门。今天天气很好，孩子们在花园里玩耍。The weather is fine and the children are playing."
    assert detect_language(text, KNOWN_LANGUAGES) == Detection(
        None, "mixed or unmapped scripts: Latin 65%, Devanagari 0%, Han 35% of the letters; "
              "a language needs one script at 70% or more")


def test_language_outside_the_corpus_gets_no_language() -> None:
    """Italian is not read as Spanish: py3langid ranks all its languages."""
    assert detect_language(ITALIAN, KNOWN_LANGUAGES) == Detection(
        None, "py3langid says 'it' (1.00), a language this corpus does not analyse")


def test_unwanted_language_gets_no_language() -> None:
    """A French document in a run that wants English and German gets None, and says why."""
    assert detect_language(SAMPLES["fr"], ("en", "de")) == Detection(
        None, "py3langid says fr (1.00), which is not among the wanted languages (en, de)")


def test_script_map_is_configurable() -> None:
    """Without Han in the map, Chinese is unmapped; with Latin mapped, py3langid is not asked."""
    assert detect_language(SAMPLES["zh"], KNOWN_LANGUAGES, {"Devanagari": "sa"}).code is None
    assert detect_language(ITALIAN, KNOWN_LANGUAGES, {"Latin": "en"}) == Detection(
        "en", "Latin script (100% of letters) means en in the script map")


def test_detection_reads_the_opening_only() -> None:
    """Only the first DETECTION_SAMPLE_CHARS characters count, however long the document."""
    padded = SAMPLES["de"].ljust(DETECTION_SAMPLE_CHARS) + SAMPLES["zh"] * 1000
    assert detect_language(padded, KNOWN_LANGUAGES).code == "de"


@pytest.mark.parametrize(("path", "code"), [("fr/romans/a.txt", "fr"), ("/sa/gita.txt", "sa"), ("ZH/x.txt", "zh")])
def test_folder_gives_the_language(path: str, code: str) -> None:
    """The first folder under the source is the code, casefolded; a leading '/' is ignored."""
    assert language_from_folder(path, KNOWN_LANGUAGES).code == code


def test_folder_that_is_no_language() -> None:
    """A file outside a language folder, or in an unknown one, gets None and the known codes."""
    known = "fr (French), en (English), es (Spanish), de (German), sa (Sanskrit), zh (Chinese)"
    assert language_from_folder("notes.txt", KNOWN_LANGUAGES) == Detection(
        None, f"'notes.txt' is not inside a language folder; file it under a folder named for its language: {known}")
    assert language_from_folder("it/a.txt", KNOWN_LANGUAGES) == Detection(
        None, f"folder 'it' is not a known language code; expected one of {known}")
    assert language_from_folder("de/a.txt", ["fr"]) == Detection(
        None, "folder 'de', which is not among the wanted languages (fr)")


def test_require_known_returns_codes_once() -> None:
    """Known codes come back in order, each once."""
    assert require_known(["sa", "fr", "sa"]) == ("sa", "fr")


def test_unknown_code_is_refused() -> None:
    """An unknown code is refused, named, with the known codes listed."""
    with pytest.raises(InvalidParameterError) as caught:
        require_known(["fr", "it", "EN"])
    assert str(caught.value) == (
        "unknown language code(s) 'it', 'EN': expected codes among fr (French), en (English), es (Spanish), "
        "de (German), sa (Sanskrit), zh (Chinese); use one of these lowercase codes, or drop the language")


def test_no_code_is_refused() -> None:
    """An empty list of codes is refused before any work."""
    with pytest.raises(InvalidParameterError, match=r"^no language codes given: expected at least one of fr"):
        require_known([])


def test_script_map_is_validated() -> None:
    """A script map's scripts must be Unicode script names and its codes known ones."""
    assert require_script_map({"Bengali": "sa"}) == {"Bengali": "sa"}
    with pytest.raises(InvalidParameterError, match=r"^script 'Klingon' in the script map is not a Unicode script"):
        require_script_map({"Klingon": "sa"})
    with pytest.raises(InvalidParameterError, match=r"^unknown language code\(s\) 'hi'"):
        require_script_map({"Devanagari": "hi"})
