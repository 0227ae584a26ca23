import struct

import pytest

from deepspeech_it.data.alphabet import Alphabet, AlphabetError
from deepspeech_it.paths import ALPHABET_DIR


def test_italian_alphabet_has_the_38_labels():
    alphabet = Alphabet.from_file(ALPHABET_DIR / "it.txt")
    assert alphabet.size == 38 and alphabet.blank_index == 38
    assert alphabet.labels[:2] == (" ", "'") and set("àèéìíòóôùú") <= alphabet.charset


def test_english_alphabet_is_deepspeechs():
    alphabet = Alphabet.from_file(ALPHABET_DIR / "en.txt")
    assert alphabet.labels == (" ",) + tuple("abcdefghijklmnopqrstuvwxyz") + ("'",)


def test_file_format_rules():
    alphabet = Alphabet.from_text("# comment\r\n \r\n\\#\r\n\r\na\nb\n")
    assert alphabet.labels == (" ", "#", "a", "b")
    assert Alphabet.from_text(alphabet.to_text()) == alphabet


def test_encode_decode_and_rejects():
    alphabet = Alphabet.from_text(" \na\nb\n")
    assert alphabet.encode("ab a") == [1, 2, 0, 1] and alphabet.decode([2, 0, 1]) == "b a"
    assert alphabet.can_encode("ba") and not alphabet.can_encode("bc") and not alphabet.can_encode("")
    with pytest.raises(AlphabetError):
        alphabet.encode("c")
    with pytest.raises(AlphabetError):
        Alphabet.from_text("a\nb\n")


def test_serialisation_is_the_native_clients_layout():
    alphabet = Alphabet.from_text(" \nà\n")
    expected = struct.pack("<H", 2) + struct.pack("<HH", 0, 1) + b" " + struct.pack("<HH", 1, 2) + "à".encode()
    assert alphabet.serialize() == expected
    assert Alphabet.deserialize(Alphabet.from_file(ALPHABET_DIR / "it.txt").serialize()).size == 38
