"""The one exception type the stage runner prints as a single line.

Each layer raises its own subclass (a damaged CSV, scorer, checkpoint or archive), so the layers never depend on the
stage runner, and the runner turns any of them into one line and exit code 1.
"""


class PipelineError(Exception):
    """A problem the user can fix; the message is one line that says what is wrong and how to fix it."""


def one_line(problem: Exception) -> str:
    """The message of PROBLEM on one line, whatever a lower layer (a native library, say) put into it."""
    return "; ".join(line.strip() for line in str(problem).splitlines() if line.strip()) or type(problem).__name__
