#!/usr/bin/env python3
"""Stage 02: unpacks the corpora of CORPORA, normalises transcripts, converts clips, writes train/dev/test CSVs."""

from deepspeech_it.pipeline.runner import run_stage
from deepspeech_it.pipeline.s02_import_cv import import_cv

if __name__ == "__main__":
    run_stage(import_cv)
