"""Which language a document is in: the folder the researchers filed it under, or detected offline.

Detection tries script rules before any statistical identifier, because in this corpus a script
settles the question and no identifier can be trusted to: py3langid 0.4 lists Sanskrit, but gives
short Devanagari verses to it at 0.3-0.8 only, sometimes behind Nepali, calls Hindi Hindi, and
reads IAST as Shona or Kabyle. So Devanagari means `sa` and Han means `zh` (`SCRIPT_LANGUAGES`,
configurable), Latin text dense in IAST's letters is `sa`, and only the remaining Latin text goes
to py3langid, whose model ships inside its wheel.
A document that gets no language gets a reason instead, for the report; nothing here raises
for a document, only for a parameter.
"""

from __future__ import annotations

import functools
import unicodedata
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from pathlib import PurePosixPath
from types import MappingProxyType
from typing import Literal, Protocol, TypeGuard, get_args

import regex
from py3langid.langid import MODEL_FILE, LanguageIdentifier

from tasks.errors import InvalidParameterError

LanguageCode = Literal["fr", "en", "es", "de", "sa", "zh"]
KNOWN_LANGUAGES: tuple[LanguageCode, ...] = get_args(LanguageCode)
LANGUAGE_NAMES: Mapping[LanguageCode, str] = MappingProxyType({
    "fr": "French", "en": "English", "es": "Spanish", "de": "German", "sa": "Sanskrit", "zh": "Chinese",
})

# Unicode script name (as `regex` spells it in \p{Script=...}) -> the language it means here.
SCRIPT_LANGUAGES: Mapping[str, LanguageCode] = MappingProxyType({"Devanagari": "sa", "Han": "zh"})
# Letters IAST uses and French, English, Spanish and German do not (so not ñ).
IAST_LETTERS = frozenset("āīūṛṝḷḹṃḥśṣṇṅṭḍ")
# Sanskrit verses in IAST run at 12-26 % of their Latin letters; English prose about them, dense
# with names such as Kṛṣṇa, at 5-7 %.
IAST_MIN_SHARE = 0.10
MIN_LETTERS = 20
DOMINANT_SCRIPT_SHARE = 0.7
MIN_CONFIDENCE = 0.75
# Detection reads a document's opening only; a few thousand letters settle it.
DETECTION_SAMPLE_CHARS = 10_000

_NOT_LETTER = regex.compile(r"[^\p{L}\p{M}]+")
_SPACES = regex.compile(r"\s+")


@dataclass(frozen=True)
class Detection:
    """A document's language, or None; `reason` says why either way, for the report."""

    code: LanguageCode | None
    reason: str


class _Ranker(Protocol):
    def rank(self, text: str) -> list[tuple[str, float]]: ...


def is_known(code: str) -> TypeGuard[LanguageCode]:
    """Tell whether `code` is one of the corpus' language codes."""
    return code in KNOWN_LANGUAGES


def describe_known() -> str:
    """The known codes with their names, for messages: `fr (French), en (English), ...`."""
    return ", ".join(f"{code} ({name})" for code, name in LANGUAGE_NAMES.items())


def require_known(codes: Iterable[str]) -> tuple[LanguageCode, ...]:
    """Return the wanted codes, once each, or refuse them before any work starts.

    Raises:
        InvalidParameterError: a code is unknown, or none was given.
    """
    requested = tuple(dict.fromkeys(codes))
    unknown = [code for code in requested if not is_known(code)]
    if unknown:
        raise InvalidParameterError(
            f"unknown language code(s) {', '.join(map(repr, unknown))}: expected codes among "
            f"{describe_known()}; use one of these lowercase codes, or drop the language")
    if not requested:
        raise InvalidParameterError(f"no language codes given: expected at least one of {describe_known()}")
    return tuple(code for code in requested if is_known(code))


def require_script_map(script_map: Mapping[str, str]) -> Mapping[str, LanguageCode]:
    """Return a script-to-language map whose scripts and codes are known, or refuse it.

    Raises:
        InvalidParameterError: a script is not a Unicode script name, or a code is unknown.
    """
    require_known(script_map.values())
    for script in script_map:
        _script_pattern(script)
    return MappingProxyType({script: code for script, code in script_map.items() if is_known(code)})


def language_from_folder(relative_path: str, wanted: Collection[LanguageCode]) -> Detection:
    """The language of the first folder of a '/'-separated path under the source (`sa/gita/1.txt`).

    Folder names are casefolded, so `FR/` counts as `fr/`.
    """
    parts = PurePosixPath(relative_path.lstrip("/")).parts
    if len(parts) < 2:
        return Detection(None, f"{relative_path!r} is not inside a language folder; "
                               f"file it under a folder named for its language: {describe_known()}")
    folder = parts[0].casefold()
    if not is_known(folder):
        return Detection(None, f"folder {parts[0]!r} is not a known language code; "
                               f"expected one of {describe_known()}")
    return _accept(folder, wanted, f"folder {parts[0]!r}")


def detect_language(text: str, wanted: Collection[LanguageCode],
                    script_map: Mapping[str, LanguageCode] = SCRIPT_LANGUAGES) -> Detection:
    """Detect the language of a document from its opening, offline.

    Args:
        text: the document, or its first piece; only `DETECTION_SAMPLE_CHARS` are read.
        wanted: the codes the run analyses; a document in another language gets None.
        script_map: Unicode script name -> code; a script listed here decides on its own.
    """
    sample = unicodedata.normalize("NFC", text[:DETECTION_SAMPLE_CHARS])
    letters = _NOT_LETTER.sub("", sample)
    if len(letters) < MIN_LETTERS:
        return Detection(None, f"too short to detect: {len(letters)} letters, at least {MIN_LETTERS} needed")
    shares = {script: len(_script_pattern(script).findall(letters)) / len(letters)
              for script in ("Latin", *script_map)}
    script, share = max(shares.items(), key=lambda item: item[1])
    if share < DOMINANT_SCRIPT_SHARE:
        measured = ", ".join(f"{name} {value:.0%}" for name, value in shares.items())
        return Detection(None, f"mixed or unmapped scripts: {measured} of the letters; "
                               f"a language needs one script at {DOMINANT_SCRIPT_SHARE:.0%} or more")
    if script in script_map:
        code = script_map[script]
        return _accept(code, wanted, f"{script} script ({share:.0%} of letters) means {code} in the script map")
    return _detect_latin(sample, letters, wanted)


def _detect_latin(sample: str, letters: str, wanted: Collection[LanguageCode]) -> Detection:
    latin = _script_pattern("Latin").findall(letters.casefold())
    iast = sum(letter in IAST_LETTERS for letter in latin) / len(latin)
    if iast >= IAST_MIN_SHARE:
        return _accept("sa", wanted, f"IAST letters are {iast:.0%} of Latin letters "
                                     f"({IAST_MIN_SHARE:.0%} or more means sa)")
    # py3langid tempers its scores by the text's length, so runs of spaces would dilute them.
    ranked = _identifier().rank(_SPACES.sub(" ", sample))
    (best, confidence), (runner_up, runner_up_confidence) = ranked[:2]
    if confidence < MIN_CONFIDENCE:
        return Detection(None, f"ambiguous: py3langid gives {best} {confidence:.2f} and {runner_up} "
                               f"{runner_up_confidence:.2f}; {MIN_CONFIDENCE} or more needed")
    if not is_known(best):
        return Detection(None, f"py3langid says {best!r} ({confidence:.2f}), a language this corpus does not analyse")
    return _accept(best, wanted, f"py3langid says {best} ({confidence:.2f})")


def _accept(code: LanguageCode, wanted: Collection[LanguageCode], evidence: str) -> Detection:
    if code in wanted:
        return Detection(code, evidence)
    return Detection(None, f"{evidence}, which is not among the wanted languages ({', '.join(wanted)})")


@functools.cache
def _script_pattern(script: str) -> regex.Pattern[str]:
    try:
        return regex.compile(rf"\p{{Script={script}}}")
    except regex.error:
        raise InvalidParameterError(
            f"script {script!r} in the script map is not a Unicode script name; "
            "expected a name such as 'Devanagari', 'Han' or 'Bengali'") from None


@functools.cache
def _identifier() -> _Ranker:
    """py3langid over all its languages, so that Italian is not read as confident Spanish."""
    identifier: _Ranker = LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)
    return identifier
