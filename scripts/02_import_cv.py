#!/usr/bin/env python3
"""Stage 02: unpacks the Common Voice archive, normalises transcripts, converts clips, writes train/dev/test CSVs."""

from deepspeech_it.cli import run_stage
from deepspeech_it.import_stage import import_common_voice

if __name__ == "__main__":
    run_stage(import_common_voice)
