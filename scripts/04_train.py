#!/usr/bin/env python3
"""Stage 04: trains the DeepSpeech acoustic model (resumable; DeepSpeech/Coqui-compatible checkpoints)."""

from deepspeech_it.pipeline.runner import run_stage
from deepspeech_it.pipeline.s04_train import train

if __name__ == "__main__":
    run_stage(train)
