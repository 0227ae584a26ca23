#!/usr/bin/env python3
"""Stage 01: checks the Common Voice archive, DATA_DIR, the tools, the GPUs and the transfer checkpoint."""

from deepspeech_it.pipeline.runner import run_stage
from deepspeech_it.pipeline.s01_check_sources import check_sources

if __name__ == "__main__":
    run_stage(check_sources)
