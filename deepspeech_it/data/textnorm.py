"""The Italian text normaliser shared by the Common Voice importer and the language-model corpus.

Transcripts and LM text must spell every word the same way, or the decoder's dictionary and the acoustic model
disagree; so there is exactly one normaliser and both stages call it.
"""

from __future__ import annotations

import re
import unicodedata

from num2words import num2words

from deepspeech_it.data.alphabet import Alphabet

REASON_EMPTY = "empty transcript"
REASON_NOT_ENCODABLE = "characters outside the alphabet"


class Rejected(ValueError):
    """The text cannot be written with the alphabet; ``reason`` is one of the REASON_* strings."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


APOSTROPHES = "’‘ʼ`´′ʹ‛"
QUOTES = "«»“”„‟\"‹›"
# Spoken forms of symbols that stand for words when read aloud.
SYMBOL_WORDS = {"%": " per cento ", "&": " e ", "€": " euro ", "$": " dollari ", "£": " sterline ", "+": " più ",
                "=": " uguale ", "@": " chiocciola "}
# Letters with no accent to strip that still have one obvious spelling in the Latin alphabet.
TRANSLITERATIONS = {"ß": "ss", "æ": "ae", "œ": "oe", "ø": "o", "ł": "l", "đ": "d", "ð": "d", "þ": "th", "ı": "i",
                    "ĳ": "ij", "ﬁ": "fi", "ﬂ": "fl"}
# Truncated words written with a final apostrophe in standard Italian: not old-style accents.
TRUNCATIONS = {"po", "mo", "to", "di", "da", "fa", "sta", "va", "be", "de", "ca", "pie", "vo", "fe"}
# Words whose old-style "e'" stands for a closed é (perché, né, sé, ventitré...), the rest take è.
CLOSED_E = re.compile(r"(ch|tr)e$|^(n|s)e$")

_NUMBER = re.compile(r"(?<![\w])(\d{1,3}(?:\.\d{3})+|\d+)(?:,(\d+))?\s*([º°ª]?)")
_OLD_ACCENT = re.compile(r"\b([^\W\d_]*?)([aeiouAEIOU])'(?![^\W\d_])")
_WORD_FINAL_TRE = re.compile(r"(?<=\w)tre\b")
_QUOTED = re.compile(r"(?<!\w)'(?=\S)([^']*?)(?<=\S)'(?!\w)")


def fix_old_style_accents(text: str) -> str:
    """``perche'`` → ``perché``, ``e'`` → ``è``, ``citta'`` → ``città``; ``dell'anno``, ``l'ho``, ``po'`` stay."""

    def accent(match: re.Match) -> str:
        stem, vowel = match.group(1), match.group(2)
        word = (stem + vowel).lower()
        if word in TRUNCATIONS:
            return match.group(0)
        if vowel in "eE":
            accented = "é" if CLOSED_E.search(word) else "è"
        else:
            accented = {"a": "à", "i": "ì", "o": "ò", "u": "ù"}[vowel.lower()]
        return stem + (accented.upper() if vowel.isupper() else accented)

    return _OLD_ACCENT.sub(accent, text)


def spell_numbers(text: str) -> str:
    """Numbers as an Italian speaker reads them: 2020 → duemilaventi, 3,5 → tre virgola cinque, 1º → primo."""

    def spoken(match: re.Match) -> str:
        whole = int(match.group(1).replace(".", ""))
        decimals, sign = match.group(2), match.group(3)
        if sign in ("º", "ª"):
            words = num2words(whole, lang="it", to="ordinal")
            if sign == "ª":
                words = words[:-1] + "a"
        else:
            words = _italian_cardinal(whole)
            if decimals:
                words += " virgola " + " ".join(_italian_cardinal(int(d)) for d in _decimal_groups(decimals))
            if sign == "°":
                words += " gradi"
        return f" {words} "

    return _NUMBER.sub(spoken, text)


def _decimal_groups(decimals: str) -> list[str]:
    # "3,05" is read "tre virgola zero cinque": leading zeros are spoken one by one.
    stripped = decimals.lstrip("0")
    return ["0"] * (len(decimals) - len(stripped)) + ([stripped] if stripped else [])


def _italian_cardinal(number: int) -> str:
    # num2words writes "ventitre"; written Italian accents a final -tré in compounds.
    return _WORD_FINAL_TRE.sub("tré", num2words(number, lang="it"))


_DIGIT = re.compile(r"\d")
_MARKS = str.maketrans({**{mark: "'" for mark in APOSTROPHES}, **{mark: " " for mark in QUOTES}})
_SYMBOLS = frozenset(SYMBOL_WORDS)
_SYMBOL_TABLE = str.maketrans(SYMBOL_WORDS)


class _LetterTable(dict):
    """A str.translate table that works out each character's spelling once, on first sight."""

    def __init__(self, letter):
        self.letter = letter

    def __missing__(self, code):
        value = self[code] = self.letter(chr(code))
        return value


class Normalizer:
    """Turns raw Italian text into a transcript the alphabet can encode, or raises :class:`Rejected`."""

    def __init__(self, alphabet: Alphabet, english_compatible: bool = False):
        self.alphabet = alphabet
        self.english_compatible = english_compatible
        self._charset = alphabet.charset
        self._table = _LetterTable(self._letter)

    def normalize(self, text: str) -> str:
        # Most lines have no apostrophe, digit or symbol: skipping those steps for them keeps the language-model
        # corpus preparation faster than lmplz itself.
        text = unicodedata.normalize("NFC", text).lower().translate(_MARKS)
        if "'" in text:
            text = _QUOTED.sub(r" \1 ", text)
        if _DIGIT.search(text):
            text = spell_numbers(text)
        if not _SYMBOLS.isdisjoint(text):
            text = text.translate(_SYMBOL_TABLE)
        if "'" in text:
            text = fix_old_style_accents(text)
        text = text.translate(self._table)
        if "'" in text:
            text = " ".join(word for word in map(self._clean_apostrophes, text.split()) if word)
        else:
            text = " ".join(text.split())
        if not text:
            raise Rejected(REASON_EMPTY)
        if not self._charset.issuperset(text):
            outside = sorted({ch for ch in text if ch not in self._charset})
            raise Rejected(REASON_NOT_ENCODABLE, "".join(outside))
        return text

    def _letter(self, ch: str) -> str:
        """One character as the alphabet writes it: kept, transliterated, a space (punctuation) or unchanged
        (so that the final check rejects the sentence)."""
        if ch in self._charset:
            return ch
        if ch == "'" or ch.isspace():
            return ch
        category = unicodedata.category(ch)
        if category[0] in "PSZC" or category == "No":
            return " "
        if ch in TRANSLITERATIONS:
            return TRANSLITERATIONS[ch]
        base = "".join(c for c in unicodedata.normalize("NFD", ch) if not unicodedata.combining(c))
        base = unicodedata.normalize("NFC", base)
        if base and all(c in self._charset for c in base) and base.isascii():
            return base
        return ch

    @staticmethod
    def _clean_apostrophes(word: str) -> str:
        # Apostrophes used as quotation marks around a word are not part of it; a final one marks a truncation
        # (po', di') only for the words that are written that way.
        word = word.lstrip("'")
        if word.endswith("'") and word.rstrip("'") not in TRUNCATIONS:
            word = word.rstrip("'")
        return word
