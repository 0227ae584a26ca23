#!/usr/bin/env python3
"""Prints the demo's test figures and transcribes two held-out clips (the last step of `make demo`)."""

from deepspeech_it.pipeline.demo_report import demo_report
from deepspeech_it.pipeline.runner import run_stage

if __name__ == "__main__":
    run_stage(demo_report)
