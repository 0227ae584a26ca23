"""The scorer package: built from a real KenLM model of the project's Italian sentences, then read back with
independent tools: the kenlm module for the model, OpenFST (pywrapfst) for the dictionary."""

from __future__ import annotations

import random
import struct

import kenlm
import pytest
import pywrapfst

from deepspeech_it.data.alphabet import Alphabet
from deepspeech_it.data.textnorm import Normalizer
from deepspeech_it.demo.synth import project_sentences
from deepspeech_it.lm import scorer as sc
from deepspeech_it.lm.kenlm_tools import build_binary, estimate_arpa, filter_arpa, kenlm_programs
from deepspeech_it.paths import ALPHABET_DIR

ORDER = 3
ALPHA, BETA = 0.931289039105002, 1.1834137581510284


@pytest.fixture(scope="module")
def alphabet() -> Alphabet:
    return Alphabet.from_file(ALPHABET_DIR / "it.txt")


@pytest.fixture(scope="module")
def package(tmp_path_factory, alphabet):
    """lm.binary of the project's sentences, its vocabulary (with two words the alphabet cannot spell) and the
    scorer written from them."""
    folder = tmp_path_factory.mktemp("scorer")
    programs = kenlm_programs()
    sentences = italian_sentences(alphabet)
    corpus = folder / "corpus.txt"
    corpus.write_text("\n".join(sentences * 3) + "\n", encoding="utf-8")
    vocabulary = sorted({word for sentence in sentences for word in sentence.split()})
    vocab_file = folder / "vocab.txt"
    vocab_file.write_text("\n".join(vocabulary) + "\n", encoding="utf-8")
    estimate_arpa(programs["lmplz"], corpus, folder / "lm.arpa", ORDER, (0, 0, 1), "5%", folder / "tmp-")
    filter_arpa(programs["filter"], folder / "lm.arpa", vocab_file, folder / "filtered.arpa")
    build_binary(programs["build_binary"], folder / "filtered.arpa", folder / "lm.binary", "5%", folder / "bb-")
    dictionary = sc.build_dictionary(vocabulary + ["straße", "año"], alphabet)
    path = folder / "kenlm.scorer"
    sc.write_scorer(path, folder / "lm.binary", dictionary, ALPHA, BETA)
    return path, folder / "lm.binary", vocabulary, dictionary


def italian_sentences(alphabet: Alphabet) -> list[str]:
    normalizer = Normalizer(alphabet)
    return [normalizer.normalize(sentence) for sentence in project_sentences()]


def openfst_dictionary(words, alphabet: Alphabet) -> pywrapfst.Fst:
    """What DeepSpeech's fill_dictionary builds, with OpenFST itself: a chain per word, RmEpsilon, Determinize,
    Minimize, ConstFst."""
    char_map = {label: i + 1 for i, label in enumerate(alphabet.labels)}
    fst = pywrapfst.VectorFst()
    for word in words:
        if not all(ch in char_map for ch in word):
            continue
        if fst.num_states() == 0:
            fst.set_start(fst.add_state())
        source = fst.start()
        for label in [char_map[ch] for ch in word] + [alphabet.space_index + 1]:
            target = fst.add_state()
            fst.add_arc(source, pywrapfst.Arc(label, label, 0, target))
            source = target
        fst.set_final(source)
    fst.rmepsilon()
    minimal = pywrapfst.determinize(fst)
    minimal.minimize()
    return pywrapfst.convert(minimal, "const")


def test_kenlm_part_loads_with_the_expected_order(package):
    path, binary, _, _ = package
    model = kenlm.Model(str(path))
    assert model.order == ORDER
    reference = kenlm.Model(str(binary))
    sentence = italian_sentences(Alphabet.from_file(ALPHABET_DIR / "it.txt"))[0]
    assert model.score(sentence) == reference.score(sentence)
    assert model.score(sentence) > model.score(" ".join(reversed(sentence.split())))


def test_header_fields_are_as_written(package):
    path, binary, _, dictionary = package
    read = sc.read_scorer(path)
    data = path.read_bytes()
    assert read.kenlm_size == binary.stat().st_size
    assert data[:read.kenlm_size] == binary.read_bytes()
    assert data[read.kenlm_size:read.kenlm_size + 4] == b"EIRT"  # int32 'TRIE', little-endian
    assert (read.magic, read.version, read.utf8) == (sc.TRIE_MAGIC, 6, False)
    # generate_scorer_package parses alpha/beta as C++ float, then stores them as double.
    assert read.alpha == struct.unpack("<f", struct.pack("<f", ALPHA))[0]
    assert read.beta == struct.unpack("<f", struct.pack("<f", BETA))[0]
    assert (read.fst_type, read.arc_type, read.fst_version, read.fst_flags) == ("const", "standard", 1, 4)
    assert read.states_offset % 16 == 0 and read.arcs_offset % 16 == 0
    assert data[read.kenlm_size + 25:] == sc.fst_bytes(dictionary, read.kenlm_size + 25)


def test_dictionary_is_what_openfst_builds(package, alphabet, tmp_path):
    path, _, vocabulary, dictionary = package
    assert dictionary.words_skipped == 2  # straße, año
    standalone = tmp_path / "dictionary.fst"
    standalone.write_bytes(sc.fst_bytes(dictionary, 0))
    ours = pywrapfst.Fst.read(str(standalone))
    reference = openfst_dictionary(vocabulary, alphabet)
    assert ours.fst_type() == "const" and ours.verify()
    assert ours.write_to_string() == reference.write_to_string()  # same states, arcs, order and properties
    read = sc.read_scorer(path)
    assert read.properties == dictionary.properties
    assert read.states.tobytes() == dictionary.states.tobytes() and read.arcs.tobytes() == dictionary.arcs.tobytes()


def test_dictionary_is_deterministic_sorted_and_accepts_exactly_the_words(package, alphabet, tmp_path):
    path, _, vocabulary, dictionary = package
    standalone = tmp_path / "dictionary.fst"
    standalone.write_bytes(sc.fst_bytes(dictionary, 0))
    fst = pywrapfst.Fst.read(str(standalone))
    wanted = pywrapfst.FstProperties.I_DETERMINISTIC | pywrapfst.FstProperties.I_LABEL_SORTED
    assert fst.properties(wanted, True) == wanted
    assert fst.properties(pywrapfst.FstProperties.ACYCLIC, True) == pywrapfst.FstProperties.ACYCLIC
    space = alphabet.space_index + 1
    paths = set()
    stack = [(fst.start(), ())]
    while stack:
        state, labels = stack.pop()
        if fst.final(state) == pywrapfst.Weight.one(fst.weight_type()):
            paths.add(labels)
        for arc in fst.arcs(state):
            assert arc.ilabel == arc.olabel and float(arc.weight) == 0.0
            stack.append((arc.nextstate, labels + (arc.ilabel,)))
    assert paths == {tuple(i + 1 for i in alphabet.encode(word)) + (space,) for word in vocabulary}
    assert sorted(sc.read_scorer(path).words(alphabet)) == vocabulary


@pytest.mark.parametrize("seed", range(4))
def test_random_vocabularies_match_openfst(alphabet, seed, tmp_path):
    rng = random.Random(seed)
    pieces = ["ca", "re", "to", "mi", "là", "pa", "ne", "sò", "di", "l'", "è", "chi", "glio", "x", "q"]
    words = {"".join(rng.choice(pieces) for _ in range(rng.randint(1, 5))) for _ in range(rng.randint(1, 2000))}
    dictionary = sc.build_dictionary(words, alphabet)
    standalone = tmp_path / "d.fst"
    standalone.write_bytes(sc.fst_bytes(dictionary, 0))
    assert pywrapfst.Fst.read(str(standalone)).write_to_string() == \
        openfst_dictionary(words, alphabet).write_to_string()


def test_set_default_alpha_beta_rewrites_only_the_header(package, tmp_path):
    path, _, _, _ = package
    copy = tmp_path / "kenlm.scorer"
    copy.write_bytes(path.read_bytes())
    before = copy.read_bytes()
    offset = sc.read_scorer(copy).kenlm_size
    sc.set_default_alpha_beta(copy, 0.5, 2.25)
    after = copy.read_bytes()
    read = sc.read_scorer(copy)
    assert (read.alpha, read.beta) == (0.5, 2.25)
    changed = [i for i in range(len(before)) if before[i] != after[i]]
    assert len(before) == len(after) and changed and min(changed) >= offset + 9 and max(changed) < offset + 25
    assert list(tmp_path.iterdir()) == [copy]  # no temporary file left


def test_a_failed_write_leaves_no_scorer(package, alphabet, tmp_path, monkeypatch):
    _, binary, vocabulary, dictionary = package

    def broken(*args):
        raise OSError("disk full")

    monkeypatch.setattr(sc, "fst_bytes", broken)
    with pytest.raises(OSError):
        sc.write_scorer(tmp_path / "kenlm.scorer", binary, dictionary, ALPHA, BETA)
    assert list(tmp_path.iterdir()) == []


def test_unspellable_vocabulary_is_refused(alphabet):
    with pytest.raises(sc.ScorerError):
        sc.build_dictionary(["ñandú", "straße", "<s>"], alphabet)
