"""What every numbered script shares: configuration, one-line errors and exit codes."""

from __future__ import annotations

import logging
import sys
from typing import Callable

from deepspeech_it.config import Config, ConfigError, load_config
from deepspeech_it.util.errors import PipelineError, one_line

EXIT_CONFIG = 2
EXIT_FAILED = 1


class StageError(PipelineError):
    """A stage cannot go on; the message is one line that says what is wrong and how to fix it."""


def run_stage(main: Callable[[Config], int | None]) -> None:
    """Loads the configuration, runs MAIN with it and exits: 0 done, 1 failed (any PipelineError), 2 bad configuration."""
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    try:
        config = load_config()
        config.layout.check_writable()
        code = main(config) or 0
    except ConfigError as problem:
        print(f"configuration error: {one_line(problem)}", file=sys.stderr)
        code = EXIT_CONFIG
    except PipelineError as problem:
        print(f"error: {one_line(problem)}", file=sys.stderr)
        code = EXIT_FAILED
    except KeyboardInterrupt:
        print("interrupted; rerun the same command to resume", file=sys.stderr)
        code = 130
    sys.exit(code)

