"""The demo's voices: espeak-ng's variants it names, and the new voices it makes from them for training."""

from __future__ import annotations

import importlib.util
import os
import random
import subprocess
import sys

import numpy as np
import pytest

from deepspeech_it.data.audio import load_training_samples
from deepspeech_it.data.framing import SAMPLE_RATE
from deepspeech_it.demo.synth import Utterance, Voice, plan_utterances, speak_mp3
from deepspeech_it.demo.voices import (VARIANTS_PER_FOLDER, Perturbation, VoiceError, Variant, perturbed,
                                       read_variant, system_data, write_voices)

from conftest import PROJECT_ROOT

SENTENCE = "la sera scende piano sulle colline e sulla città"


def demo_corpus_script():
    spec = importlib.util.spec_from_file_location("make_demo_corpus", PROJECT_ROOT / "scripts" / "make_demo_corpus.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_voice_the_demo_names_is_one_espeak_has():
    """espeak-ng speaks an unknown variant ("it+Antonio" where the file is "antonio") as the plain voice without a
    word, so a misspelt name silently made one training voice a copy of another."""
    voices = demo_corpus_script().VOICES
    data = system_data()
    for split, names in voices.items():
        for name in names:
            read_variant(name, data)
    assert not set(voices["train"]) & (set(voices["dev"]) | set(voices["test"]))
    with pytest.raises(VoiceError, match="no variant it\\+Antonio"):
        read_variant("it+Antonio", data)


def test_a_variant_file_is_read_with_espeaks_defaults_where_it_is_silent():
    data = system_data()
    jacky = read_variant("it+Jacky", data)
    assert jacky.formants[3] == (15.0, 20.0, 30.0, 0.0) and jacky.pitch == (85.0, 130.0) and jacky.voicing == 135.0
    assert read_variant("it", data) == Variant()
    alex = read_variant("it+Alex", data)
    assert alex.formants[0] == (100.0, 100.0, 100.0, 0.0) and alex.formants[1] == (110.0, 115.0, 100.0, 0.0)


def spectral_centroid(samples: np.ndarray) -> float:
    power = np.abs(np.fft.rfft(samples)) ** 2
    freqs = np.fft.rfftfreq(len(samples), 1 / SAMPLE_RATE)
    return float(np.sum(freqs * power) / np.sum(power))


def spoken(tmp_path, voice: Voice, name: str) -> np.ndarray:
    clip = tmp_path / f"{name}.mp3"
    speak_mp3(Utterance("train", SENTENCE, voice.name, 160, clip.name, SAMPLE_RATE, espeak_data=voice.data), clip)
    return load_training_samples(clip).astype(np.float64)


def test_a_made_voice_moves_the_formants_of_its_variant(tmp_path):
    """A vocal tract 20 % shorter raises every formant by a quarter: the speech's spectrum moves up; 20 % longer,
    down. Nothing else is changed, so the shift is the made voice's, spoken through its private data folder."""
    still = dict(formant_frequency=1.0, formant_height=1.0, formant_width=1.0, pitch_base=1.0, pitch_range=1.0,
                 voicing=1.0, consonants=1.0)
    higher = write_voices(tmp_path / "higher", ["it+m3"], 1, seed=1, how=Perturbation(vocal_tract=(1.25, 1.25), **still))
    lower = write_voices(tmp_path / "lower", ["it+m3"], 1, seed=1, how=Perturbation(vocal_tract=(0.8, 0.8), **still))
    base = spectral_centroid(spoken(tmp_path, Voice("it+m3"), "base"))
    assert spectral_centroid(spoken(tmp_path, higher[0], "higher")) > 1.1 * base
    assert spectral_centroid(spoken(tmp_path, lower[0], "lower")) < 0.9 * base


def test_perturbations_stay_within_their_factors():
    variant = read_variant("it+Alex", system_data())
    how = Perturbation()
    for seed in range(20):
        lines = perturbed(variant, random.Random(seed), how).splitlines()
        formants = {int(w[1]): [float(x) for x in w[2:]] for w in (line.split() for line in lines)
                    if w[0] == "formant"}
        assert sorted(formants) == list(range(9))
        for number, (frequency, height, width, *_) in formants.items():
            low = variant.formants[number][0] * how.vocal_tract[0] / how.formant_frequency
            high = variant.formants[number][0] * how.vocal_tract[1] * how.formant_frequency
            assert low - 1 <= frequency <= high + 1
            assert variant.formants[number][1] / how.formant_height - 1 <= height <= \
                variant.formants[number][1] * how.formant_height + 1
        pitch = next(line for line in lines if line.startswith("pitch")).split()
        assert variant.pitch[0] / how.pitch_base - 1 <= float(pitch[1]) <= variant.pitch[0] * how.pitch_base + 1


def test_more_voices_than_espeak_lists_in_one_folder_are_all_spoken(tmp_path):
    """espeak-ng finds at most 349 voices in a data folder and calls the others unknown: the made voices spread
    over folders of VARIANTS_PER_FOLDER, and the last of them speaks like the first."""
    voices = write_voices(tmp_path / "voices", ["it+m1", "it+f2"], VARIANTS_PER_FOLDER + 1, seed=3)
    assert len({v.data for v in voices}) == 2 and len({v.name for v in voices}) == len(voices)
    for voice in (voices[0], voices[-1]):
        assert len(spoken(tmp_path, voice, voice.name)) > SAMPLE_RATE


def test_made_voices_reach_the_training_clips_only():
    voices = [Voice("it+rnd0000", "/a"), Voice("it+rnd0001", "/b")]
    sentences = {split: [f"frase {split}"] for split in ("train", "dev", "test")}
    plan = plan_utterances(sentences, {"train": voices, "dev": ["it+f5"], "test": ["it+Gene"]}, [150],
                           {"train": 4, "dev": 2, "test": 2})
    train = [u for u in plan if u.split == "train"]
    assert [(u.voice, u.espeak_data) for u in train] == [(v.name, v.data) for v in voices] * 2
    assert all(f"--path={u.espeak_data}" in u.espeak_options() for u in train)
    assert all(u.espeak_data == "" and not any(o.startswith("--path") for o in u.espeak_options())
               for u in plan if u.split != "train")


def test_the_demo_corpus_without_espeak_ng_stops_with_one_line(tmp_path):
    """make demo's first step, on a machine where espeak-ng does not run: one line naming it, exit 1, nothing
    written, no traceback."""
    result = subprocess.run([sys.executable, str(PROJECT_ROOT / "scripts" / "make_demo_corpus.py"),
                             str(tmp_path / "sources")], capture_output=True, text=True,
                            env={**os.environ, "PATH": str(tmp_path)})
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [result.stderr.strip()]
    assert result.stderr.startswith("error: espeak-ng does not run") and "Traceback" not in result.stderr
    assert not (tmp_path / "sources").exists()
