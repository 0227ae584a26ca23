"""The end of `make demo`: the test figures of the trained model and two held-out clips transcribed."""

from __future__ import annotations

import json
import time

from deepspeech_it.config import SCORER_FILE, TFLITE_FILE, Config
from deepspeech_it.data.csvfile import read_rows
from deepspeech_it.export.transcribe import Transcriber

CER_GOAL, WER_GOAL = 0.10, 0.15


def demo_report(config: Config) -> int:
    layout = config.layout
    greedy = json.loads((layout.reports / "test_greedy.json").read_text(encoding="utf-8"))
    scored = json.loads((layout.reports / "test_scorer.json").read_text(encoding="utf-8"))["with_scorer"]
    print(f"\ndemo: test set ({greedy['utterances']} clips, voices never heard in training)")
    print(f"  greedy       WER {greedy['wer']:6.1%}  CER {greedy['cer']:6.1%}   (goal: CER <= {CER_GOAL:.0%})")
    print(f"  with scorer  WER {scored['wer']:6.1%}  CER {scored['cer']:6.1%}   (goal: WER <= {WER_GOAL:.0%})")
    test = read_rows(layout.cv_csv("test"))
    transcriber = Transcriber(layout.models / TFLITE_FILE, layout.models / SCORER_FILE, beam_width=config.beam_width)
    print("\ndemo: two held-out clips through scripts/transcribe.py's transcriber")
    for row in test[:2]:
        started = time.perf_counter()
        text = transcriber.transcribe_file(row.path).text
        print(f"  {row.path.name} ({time.perf_counter() - started:.2f} s)\n"
              f"    said:  {row.transcript}\n    heard: {text}")
    met = greedy["cer"] <= CER_GOAL and scored["wer"] <= WER_GOAL
    print(f"\ndemo goals {'met' if met else 'NOT met'}; outputs in {config.data_dir}")
    return 0
