#!/usr/bin/env python3
"""Writes the demo's Common Voice-shaped Italian archive, its sha256, the demo's language-model text and the noise
the overlay augmentation mixes in (DEMO_DIR/sources/noise: coloured noise and babble of training voices, listed in
noise.csv) into DEMO_DIR/sources, unless they are already there.

Dev and test are spoken by voices that never appear in train and use sentences train never has, so the demo's
figures are measured on unseen voices and unseen sentences. Training clips vary more than dev and test: TRAIN_VOICES
voices made for the demo (deepspeech_it/demo/voices.py), each a random perturbation of one of 65 espeak-ng variants,
and each clip its own pitch, amplitude and word gap.
"""

import gzip
import hashlib
import shutil
import sys
from pathlib import Path

from deepspeech_it.data.alphabet import Alphabet
from deepspeech_it.data.textnorm import Normalizer
from deepspeech_it.demo.noise import NOISE_CSV, write_noise_corpus
from deepspeech_it.demo.sentences import demo_text
from deepspeech_it.demo.synth import Variety, build_archive
from deepspeech_it.demo.voices import system_data, write_voices
from deepspeech_it.paths import ALPHABET_DIR
from deepspeech_it.util.atomic import atomic_path, write_text_atomic
from deepspeech_it.util.errors import PipelineError, one_line

# espeak-ng's variants that speak Italian like a person (not the robots, whispers or effects); Gene2 is left out
# because it is a variant of the test voice Gene.
VOICES = {
    "train": ["it", "it+m1", "it+m2", "it+m3", "it+m4", "it+m5", "it+m6", "it+m7", "it+m8", "it+f1", "it+f2", "it+f3",
              "it+f4", "it+Alex", "it+Andrea", "it+antonio", "it+Marco", "it+Mario", "it+anika", "it+klatt",
              "it+klatt2", "it+klatt3", "it+klatt4", "it+Henrique", "it+adam", "it+Alicia", "it+Andy", "it+Annie",
              "it+aunty", "it+belinda", "it+benjamin", "it+boris", "it+caleb", "it+david", "it+Diogo", "it+ed",
              "it+edward", "it+gustave", "it+Hugo", "it+iven", "it+john", "it+linda", "it+marcelo", "it+max",
              "it+Michael", "it+michel", "it+miguel", "it+Mike", "it+Nguyen", "it+pablo", "it+paul", "it+pedro",
              "it+quincy", "it+rob", "it+robert", "it+steph", "it+grandpa", "it+grandma", "it+norbert", "it+sandro",
              "it+shelby", "it+travis", "it+victor", "it+zac", "it+Lee"],
    "dev": ["it+f5", "it+Denis"],
    "test": ["it+Gene", "it+Jacky"],
}
# Voices made for training from VOICES["train"]: each speaks 3 clips, one at each of SPEEDS.
TRAIN_VOICES = 1200
# Training clips only: every clip its own pitch, loudness and pause between words.
TRAIN_VARIETY = Variety(pitch=(25, 75), amplitude=(60, 160), word_gap=(0, 4))
SPEEDS = (140, 165, 190)
PER_SPLIT = {"train": 3600, "dev": 100, "test": 100}
TRAIN_SENTENCES = 3600
SEED = 2024


def main(sources: Path) -> None:
    archive, checksum, lm_text = sources / "it.tar.gz", sources / "it.tar.gz.sha256", sources / "lm_text.txt.gz"
    system_data()      # espeak-ng checked before any work: every clip and the noise's babble need it
    normalizer = Normalizer(Alphabet.from_file(ALPHABET_DIR / "it.txt"))
    sentences, lm_sentences = demo_text(normalizer, TRAIN_SENTENCES, PER_SPLIT["dev"], SEED)
    noise_csv = sources / "noise" / NOISE_CSV
    if not noise_csv.is_file():
        # Babble from training voices and sentences only, so dev and test stay unheard.
        write_noise_corpus(noise_csv.parent, sentences["train"], VOICES["train"], SEED)
        print(f"noise for the overlay augmentation written: {noise_csv}")
    if archive.is_file() and checksum.is_file() and lm_text.is_file():
        print(f"demo corpus in {sources} already there")
        return
    voices = dict(VOICES, train=write_voices(sources / "voices", VOICES["train"], TRAIN_VOICES, SEED))
    print(f"speaking {sum(PER_SPLIT.values())} Italian clips with {sum(map(len, voices.values()))} voices ...")
    with atomic_path(archive) as temp:
        build_archive(temp, sentences=sentences, voices=voices, speeds=SPEEDS, per_split=PER_SPLIT, seed=SEED,
                      variety=TRAIN_VARIETY, show_progress=True)
    shutil.rmtree(sources / "voices")
    with atomic_path(lm_text) as temp:
        temp.write_bytes(gzip.compress(("\n".join(lm_sentences) + "\n").encode("utf-8")))
    digest = hashlib.sha256(archive.read_bytes()).hexdigest()
    write_text_atomic(checksum, f"{digest}  {archive.name}\n")
    print(f"demo corpus written: {archive} (sha256 {digest}), LM text {lm_text} ({len(lm_sentences)} sentences)")


if __name__ == "__main__":
    try:
        main(Path(sys.argv[1]))
    except PipelineError as problem:
        sys.exit(f"error: {one_line(problem)}")
