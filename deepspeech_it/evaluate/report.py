"""Word and character error rates, and the list of worst utterances, as every report of the pipeline gives them
(stage 04's greedy test report, stage 05's search and test report)."""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

WORST_UTTERANCES = 10


def error_rates(references: Sequence[str], hypotheses: Sequence[str]) -> tuple[float, float]:
    """Corpus WER and CER (edits over reference words / characters, as DeepSpeech's evaluation reports them)."""
    import jiwer

    return float(jiwer.wer(list(references), list(hypotheses))), float(jiwer.cer(list(references), list(hypotheses)))


def worst_utterances(wav_paths: Sequence[str | Path], references: Sequence[str],
                     hypotheses: Mapping[str, Sequence[str]], count: int = WORST_UTTERANCES) -> list[dict]:
    """The COUNT utterances with the highest WER (then CER) of the first of HYPOTHESES; every column of HYPOTHESES
    (name -> one text per utterance) is shown beside the reference."""
    import jiwer

    scored = next(iter(hypotheses.values()))
    rows = [{"wav_filename": Path(path).name, "reference": reference,
             **{name: texts[i] for name, texts in hypotheses.items()},
             "wer": float(jiwer.wer(reference, scored[i])), "cer": float(jiwer.cer(reference, scored[i]))}
            for i, (path, reference) in enumerate(zip(wav_paths, references))]
    return sorted(rows, key=lambda row: (-row["wer"], -row["cer"]))[:count]
