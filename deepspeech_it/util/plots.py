"""PNG figures of the reports: matplotlib without a display, written atomically."""

from __future__ import annotations

from pathlib import Path


def pyplot():
    """matplotlib.pyplot on the Agg backend, imported on first use: stages that draw nothing never pay for it."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    return plt


def save_figure(figure, path: Path, dpi: int = 100) -> None:
    """Writes FIGURE to PATH as PNG under a temporary name, then closes it."""
    from deepspeech_it.util.atomic import atomic_path

    figure.tight_layout()
    with atomic_path(path) as temp:
        figure.savefig(temp, format="png", dpi=dpi)
    pyplot().close(figure)
