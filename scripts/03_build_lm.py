#!/usr/bin/env python3
"""Stage 03: Italian language model (KenLM) and the DeepSpeech 0.9.3 scorer package lm/kenlm.scorer."""

from deepspeech_it.pipeline.runner import run_stage
from deepspeech_it.pipeline.s03_build_lm import build_lm

if __name__ == "__main__":
    run_stage(build_lm)
