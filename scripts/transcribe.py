#!/usr/bin/env python3
"""Transcribe audio files with the exported model: ``scripts/transcribe.py [--json] [--no-scorer] FILE...``."""

import sys

from deepspeech_it.config import ConfigError, load_config
from deepspeech_it.export.transcribe import command_line


def main() -> int:
    try:
        config = load_config()
    except ConfigError as problem:
        print(f"configuration error: {problem}", file=sys.stderr)
        return 2
    return command_line(sys.argv[1:], config.layout.models, config.beam_width)


if __name__ == "__main__":
    sys.exit(main())
