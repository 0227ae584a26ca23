#!/usr/bin/env python3
"""Stage 05: chooses lm_alpha/lm_beta on the dev set with the scorer, decodes the test set once with the choice,
and writes the chosen pair into the scorer's header."""

from deepspeech_it.pipeline.runner import run_stage
from deepspeech_it.pipeline.s05_evaluate_lm import evaluate_lm

if __name__ == "__main__":
    run_stage(evaluate_lm)
