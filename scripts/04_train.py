#!/usr/bin/env python3
"""Stage 04: trains the DeepSpeech acoustic model (resumable; DeepSpeech/Coqui-compatible checkpoints)."""

from deepspeech_it.cli import run_stage
from deepspeech_it.train_stage import run_training

if __name__ == "__main__":
    run_stage(run_training)
