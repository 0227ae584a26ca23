#!/usr/bin/env python3
"""Stage 03: Italian language model (KenLM) and the DeepSpeech 0.9.3 scorer package lm/kenlm.scorer."""

from deepspeech_it.cli import run_stage
from deepspeech_it.lm_stage import build_language_model

if __name__ == "__main__":
    run_stage(build_language_model)
