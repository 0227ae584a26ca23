"""Stage records: what a stage ran with, so that a rerun is skipped when nothing changed.

A record ``<folder>/<name>.stage.json`` holds the resolved parameters, a digest of every input, the outputs and a
status. It is written as ``running`` when the stage starts and ``done`` when it has finished, so an interrupted
stage never counts as done, and a changed parameter, input or missing output makes the stage run again.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from deepspeech_it.util.atomic import write_json_atomic
from deepspeech_it.util.digest import file_digest


def fingerprint(params: dict[str, Any], inputs: Iterable[str | Path] = ()) -> dict[str, Any]:
    """What decides whether a stage's outputs are current: its parameters and the digests of its input files."""
    return {
        "params": json.loads(json.dumps(params, default=str)),
        "inputs": {str(Path(p)): file_digest(p) for p in sorted(map(str, inputs))},
    }


@dataclass(frozen=True)
class StageRecord:
    folder: Path
    name: str

    @property
    def path(self) -> Path:
        return Path(self.folder) / f"{self.name}.stage.json"

    def read(self) -> dict[str, Any] | None:
        try:
            return json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None

    def is_current(self, fp: dict[str, Any]) -> bool:
        record = self.read()
        return (
            record is not None
            and record.get("status") == "done"
            and record.get("fingerprint") == fp
            and all(Path(p).exists() for p in record.get("outputs", []))
        )

    def mark_running(self, fp: dict[str, Any]) -> None:
        write_json_atomic(self.path, {"stage": self.name, "status": "running", "started": _now(), "fingerprint": fp})

    def mark_done(self, fp: dict[str, Any], outputs: Iterable[str | Path] = (), summary: Any = None) -> None:
        record = self.read() or {}
        write_json_atomic(self.path, {
            "stage": self.name,
            "status": "done",
            "started": record.get("started", _now()),
            "finished": _now(),
            "fingerprint": fp,
            "outputs": [str(p) for p in outputs],
            "summary": summary,
        })


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")
