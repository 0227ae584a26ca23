"""Beam search with the scorer on hand-made probability matrices and a hand-written KenLM model."""

import numpy as np
import pytest

from deepspeech_it.decode.ctc import (FRAME_SECONDS, DecoderPool, InvalidProbabilities, ScorerDecoder, ScorerSpec,
                                       collapse_ctc, greedy_decode, scorer_spec)

from decoding_helpers import ALPHABET, BLANK, probabilities, spelled, write_arpa, write_scorer_package


def decoder(tmp_path, unigrams, words=None, bigrams={}, beam_width=100) -> ScorerDecoder:
    arpa = write_arpa(tmp_path / "lm.arpa", unigrams, bigrams)
    return ScorerDecoder(ScorerSpec(ALPHABET, arpa, tuple(words or unigrams), beam_width))


def test_scorer_turns_an_ambiguous_spelling_into_the_dictionary_word(tmp_path):
    # Acoustically "k" beats "c"; only "casa" is a word.
    probs = probabilities([{"k": 0.55, "c": 0.4}, BLANK, *spelled("asa")])
    assert greedy_decode(probs, ALPHABET).text == "kasa"
    dec = decoder(tmp_path, {"casa": -1.0, "cosa": -1.0, "bella": -1.0})
    assert dec.decode(probs, alpha=0.93, beta=1.18).text == "casa"


def test_language_model_weight_decides_between_dictionary_words_and_alpha_zero_ignores_it(tmp_path):
    # "casa" (one s) is acoustically better, "cassa" is far likelier for the LM.
    probs = probabilities([*spelled("ca"), {"s": 0.6, BLANK: 0.4}, BLANK, {"s": 0.45, BLANK: 0.55}, *spelled("a")])
    dec = decoder(tmp_path, {"casa": -4.0, "cassa": -0.3})
    assert dec.decode(probs, alpha=0.0, beta=0.0).text == "casa"
    assert dec.decode(probs, alpha=3.0, beta=0.0).text == "cassa"
    # alpha 0 chooses as if there were no LM: the same with the LM preferences reversed.
    reversed_lm = decoder(tmp_path, {"casa": -0.3, "cassa": -4.0})
    assert reversed_lm.decode(probs, alpha=0.0, beta=0.0).text == "casa"


def test_word_insertion_bonus_changes_the_number_of_words(tmp_path):
    # An uncertain space between "al" and "to": "alto" or "al to", all three words equally likely for the LM.
    probs = probabilities([*spelled("al"), {" ": 0.5, BLANK: 0.5}, *spelled("to")])
    dec = decoder(tmp_path, {"al": -1.0, "to": -1.0, "alto": -1.0})
    counts = {beta: len(dec.decode(probs, alpha=0.0, beta=beta).words) for beta in (-4.0, 0.0, 4.0)}
    assert counts[-4.0] == 1 and counts[4.0] == 2
    assert dec.decode(probs, alpha=0.0, beta=4.0).text == "al to"


def test_only_dictionary_words_come_out_and_double_letters_need_a_blank(tmp_path):
    probs = probabilities([*spelled("tu"), "t", "t", BLANK, *spelled("o "), *spelled("bello")])
    dec = decoder(tmp_path, {"tuto": -1.0, "tutto": -1.0, "bello": -1.0})
    text = dec.decode(probs, alpha=0.5, beta=1.0).text
    assert text == "tuto bello"      # "t t" without a blank between is one t
    assert greedy_decode(probs, ALPHABET).text == "tuto bello"
    unknown = probabilities(spelled("zorro"))
    assert dec.decode(unknown, alpha=0.5, beta=1.0).text in ("", "tuto", "tutto", "bello")


def test_a_dictionary_word_outside_the_language_model_scores_minus_1000_as_in_deepspeech(tmp_path):
    # "cosa" is acoustically far better, but only "casa" is in the KenLM vocabulary: DeepSpeech's scorer gives an
    # out-of-vocabulary word -1000 (not KenLM's <unk> probability), so any alpha > 0 rules it out.
    probs = probabilities([*spelled("c"), {"o": 0.85, "a": 0.1}, BLANK, *spelled("sa")])
    dec = decoder(tmp_path, {"casa": -1.0}, words=["casa", "cosa"])
    assert dec.decode(probs, alpha=0.0, beta=0.0).text == "cosa"
    assert dec.decode(probs, alpha=0.05, beta=0.0).text == "casa"


def test_word_times_and_confidence(tmp_path):
    frames = [BLANK] * 5 + spelled("casa") + [" "] + [BLANK] * 10 + spelled("bella")
    probs = probabilities(frames)
    dec = decoder(tmp_path, {"casa": -0.5, "bella": -0.5}, bigrams={("casa", "bella"): -0.1})
    out = dec.decode(probs, alpha=0.93, beta=1.18)
    assert out.text == "casa bella"
    starts = [round(w.start / FRAME_SECONDS) for w in out.words]
    assert starts == [5, frames.index("b")]
    assert out.words[0].duration == pytest.approx((5 + 8 - 5) * FRAME_SECONDS)
    # The confidence is DeepSpeech's: the acoustic log probability (near the best path's) plus, per word,
    # alpha * ln P(word | history) + beta; here log10 P(casa | <s>) = -0.3 (backoff) - 0.5, P(bella | casa) = -0.1.
    def expected(alpha, beta):
        return float(np.log(probs.max(axis=1)).sum()) + alpha * np.log(10) * (-0.8 - 0.1) + 2 * beta
    assert out.confidence == pytest.approx(expected(0.93, 1.18), abs=0.5)
    other = dec.decode(probs, alpha=3.0, beta=-1.0).confidence
    assert other - out.confidence == pytest.approx(expected(3.0, -1.0) - expected(0.93, 1.18), abs=1e-3)
    assert out.as_dict()["words"][1]["word"] == "bella"


def test_collapse_and_greedy_timing():
    blank = ALPHABET.blank_index
    a, b = ALPHABET.encode("ab")
    assert collapse_ctc([blank, a, a, blank, a, b, b], blank) == [(a, 1), (a, 4), (b, 5)]
    out = greedy_decode(probabilities([BLANK, "a", BLANK, " ", "b"]), ALPHABET)
    assert out.text == "a b" and [w.start for w in out.words] == [FRAME_SECONDS, 4 * FRAME_SECONDS]


def test_pool_on_two_processes_matches_one(tmp_path):
    arpa = write_arpa(tmp_path / "lm.arpa", {"casa": -1.0, "cassa": -0.5, "bella": -1.0})
    spec = ScorerSpec(ALPHABET, arpa, ("casa", "cassa", "bella"), 50)
    rng = np.random.default_rng(3)
    utterances = [probabilities(spelled(w) + [{" ": 0.6, BLANK: 0.4}] + spelled("bella"))
                  * rng.uniform(0.9, 1.1) for w in ("casa", "cassa", "kasa", "cas")]
    utterances = [u / u.sum(axis=1, keepdims=True) for u in utterances]
    with DecoderPool(spec, utterances, jobs=1, progress=False) as pool:
        single = pool.decode(0.9, 1.2)
        greedy = pool.decode(None, None)
    with DecoderPool(spec, utterances, jobs=2, progress=False) as pool:
        double = pool.decode(0.9, 1.2)
    assert [t.text for t in single] == [t.text for t in double]
    assert single[0].text == "casa bella" and greedy[2].text == "kasa bella"


def test_decoder_reads_the_scorer_package_alone(tmp_path):
    """KenLM part and dictionary both come from the one .scorer file (KenLM ignores the trailing dictionary)."""
    unigrams = {"casa": -1.0, "cosa": -1.0, "bella": -1.0}
    scorer = write_scorer_package(tmp_path, unigrams, words=["casa", "bella", "cosa"], alpha=0.7, beta=2.0)
    spec = scorer_spec(scorer, ALPHABET, beam_width=100)
    assert sorted(spec.words) == ["bella", "casa", "cosa"] and spec.lm_path == scorer
    probs = probabilities([{"k": 0.55, "c": 0.4}, BLANK, *spelled("asa "), *spelled("bella")])
    from_package = ScorerDecoder(spec).decode(probs, alpha=0.93, beta=1.18)
    from_arpa = decoder(tmp_path, unigrams).decode(probs, alpha=0.93, beta=1.18)
    assert from_package.text == from_arpa.text == "casa bella"
    assert from_package.confidence == pytest.approx(from_arpa.confidence, abs=1e-3)


def test_agrees_with_a_plain_python_deepspeech_beam_search_on_model_like_outputs(tmp_path):
    """Random sentences of a small dictionary as peaky frames (characters and spaces over 1-3 frames, confusions
    spread over the other letters), decoded with random alpha/beta by both implementations: all agree."""
    from ds_reference import reference_decode

    unigrams = {"la": -0.8, "al": -1.2, "alla": -1.0, "sala": -1.5, "lasa": -2.0, "sa": -1.4, "a": -1.1, "ala": -1.6}
    bigrams = {("la", "sala"): -0.3, ("alla", "sala"): -0.4, ("sa", "la"): -0.5, ("a", "la"): -0.2}
    dec = decoder(tmp_path, unigrams, bigrams=bigrams, beam_width=64)

    import kenlm

    lm = kenlm.Model(str(tmp_path / "lm.arpa"))

    def lm_log10(history, word):
        state, out = kenlm.State(), kenlm.State()
        lm.BeginSentenceWrite(state)
        for previous in history:
            lm.BaseScore(state, previous, out)
            state, out = out, state
        return lm.BaseScore(state, word, out)

    rng = np.random.default_rng(1)
    used = [ALPHABET.labels.index(c) for c in "las "] + [ALPHABET.blank_index]

    def frame(target, peak):
        row = np.full(ALPHABET.size + 1, 1e-6)
        row[used] = rng.dirichlet(np.full(len(used), 0.5)) * (1 - peak)
        row[target] += peak
        return row / row.sum()

    agree, cases = 0, 150
    for _ in range(cases):
        text = " ".join(rng.choice(list(unigrams), int(rng.integers(1, 4))))
        rows = [frame(ALPHABET.blank_index, rng.uniform(0.9, 0.999)) for _ in range(int(rng.integers(0, 3)))]
        for ch in text:
            repeats = int(rng.integers(2, 4) if ch == " " else rng.integers(1, 3))
            rows += [frame(ALPHABET.labels.index(ch), rng.uniform(0.8, 0.99)) for _ in range(repeats)]
            rows += [frame(ALPHABET.blank_index, rng.uniform(0.9, 0.999)) for _ in range(int(rng.integers(0, 3)))]
        probs = np.array(rows)
        alpha, beta = float(rng.uniform(0, 2)), float(rng.uniform(-1, 3))
        ours = dec.decode(probs.astype(np.float32), alpha, beta).text
        agree += ours == reference_decode(probs, ALPHABET.labels, list(unigrams), lm_log10, alpha, beta, 64)
    assert agree == cases


@pytest.mark.parametrize("bad", [np.nan, -0.25, np.inf, 1e39])
@pytest.mark.parametrize("how", ["greedy", "beam", "pool"])
def test_a_diverged_models_outputs_are_refused_before_the_search(tmp_path, bad, how):
    """NaN breaks the ordering std::sort needs; the search must never see it, nor negative or infinite values
    (1e39 is finite in float64 and infinite in the float32 the search gets)."""
    probs = probabilities([*spelled("casa")]).astype(np.float64)
    probs[3, 5] = bad
    dec = decoder(tmp_path, {"casa": -1.0})
    with pytest.raises(InvalidProbabilities, match=r"frame 3, label 5.*diverged"):
        if how == "greedy":
            greedy_decode(probs, ALPHABET)
        elif how == "beam":
            dec.decode(probs, alpha=0.93, beta=1.18)
        else:
            with DecoderPool(dec.spec, [probabilities(spelled("casa")), probs], jobs=2, progress=False) as pool:
                pool.decode(0.93, 1.18)
    assert dec.decode(probabilities(spelled("casa")), alpha=0.93, beta=1.18).text == "casa"   # still usable
