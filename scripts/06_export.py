#!/usr/bin/env python3
"""Stage 06: TFLite and SavedModel export, checked in DeepSpeech 0.9.3 and Coqui STT 1.4, and release archives."""

from deepspeech_it.pipeline.runner import run_stage
from deepspeech_it.pipeline.s06_export import export

if __name__ == "__main__":
    run_stage(export)
