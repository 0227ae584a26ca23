"""The end of `make demo`: the test figures of the trained model, the same test clips degraded (robustness sets),
two held-out clips transcribed, the goals, and the machine's matmul rate beside the demo's total time."""

from __future__ import annotations

import json
import time

from deepspeech_it.config import (DEMO_REPORT_FILE, ROBUSTNESS_FIGURE, ROBUSTNESS_REPORT_FILE, SCORER_FILE,
                                   TFLITE_FILE, Config)
from deepspeech_it.data.csvfile import read_rows
from deepspeech_it.data.framing import SAMPLE_RATE
from deepspeech_it.pipeline.runner import StageError
from deepspeech_it.util.atomic import write_json_atomic

CER_GOAL, WER_GOAL, ROBUST_WER_GOAL = 0.08, 0.09, 0.20   # clean greedy CER, clean scorer WER, each set's scorer WER
MATMUL_SIZE, MATMUL_TRIALS = 2048, 10                   # about a second on the demo's 2-core machines


def demo_report(config: Config) -> int:
    layout = config.layout
    reports = {name: layout.reports / name for name in ("test_greedy.json", "test_scorer.json")}
    for path in [*reports.values(), layout.models / TFLITE_FILE, layout.cv_csv("test")]:
        if not path.is_file():
            raise StageError(f"{path} is missing; run the pipeline first (make train)")
    greedy = json.loads(reports["test_greedy.json"].read_text(encoding="utf-8"))
    tested = json.loads(reports["test_scorer.json"].read_text(encoding="utf-8"))
    clean = {"greedy": {"wer": greedy["wer"], "cer": greedy["cer"]}, "with_scorer": tested["with_scorer"]}
    print(f"\ndemo: test set ({greedy['utterances']} clips, voices never heard in training)")
    print(f"  greedy       WER {greedy['wer']:6.1%}  CER {greedy['cer']:6.1%}")
    print(f"  with scorer  WER {clean['with_scorer']['wer']:6.1%}  CER {clean['with_scorer']['cer']:6.1%}")
    two_clips(config)
    scores = robustness(config, tested["lm_alpha"], tested["lm_beta"])
    goals = goal_table(clean, scores)
    print_table(clean, scores, goals)
    machine = machine_figures(layout)
    print(f"\ndemo: {machine_line(machine)}")
    write_json_atomic(layout.reports / DEMO_REPORT_FILE, {"clean": clean, "robustness": scores, "goals": goals,
                                                          "machine": machine})
    met = all(goal["met"] for goal in goals)
    print(f"demo goals {'met' if met else 'NOT met'}; outputs in {config.data_dir}")
    return 0


def two_clips(config: Config) -> None:
    from deepspeech_it.export.transcribe import Transcriber

    layout = config.layout
    transcriber = Transcriber(layout.models / TFLITE_FILE, layout.models / SCORER_FILE, beam_width=config.beam_width)
    print("\ndemo: two held-out clips through scripts/transcribe.py's transcriber")
    for row in read_rows(layout.cv_csv("test"))[:2]:
        started = time.perf_counter()
        text = transcriber.transcribe_file(row.path).text
        print(f"  {row.path.name} ({time.perf_counter() - started:.2f} s)\n"
              f"    said:  {row.transcript}\n    heard: {text}")


def robustness(config: Config, alpha: float, beta: float) -> list[dict]:
    """Every robustness set made (once) from the test clips and scored from the checkpoint's outputs with the pair
    stage 05 chose; written to reports/robustness.json and .png."""
    from deepspeech_it.decode.ctc import scorer_spec
    from deepspeech_it.demo.festival import other_engine_set
    from deepspeech_it.demo.noise import COLOURS, NOISE_CSV, coloured
    from deepspeech_it.evaluate import acoustic_outputs as acoustic
    from deepspeech_it.evaluate import robustness as sets
    from deepspeech_it.model.checkpoint import CheckpointError, bundle_files, resolve_checkpoint

    layout = config.layout
    try:
        model_files = bundle_files(resolve_checkpoint(layout.checkpoints))
    except CheckpointError as problem:
        raise StageError(str(problem)) from None
    noise_csv = layout.sources / "noise" / NOISE_CSV
    # The demo's own noise (coloured, and babble of training voices: never the test speakers); pink noise else.
    noise = sets.source_noise(noise_csv) if noise_csv.is_file() else (
        lambda length, rng: coloured(length / SAMPLE_RATE, COLOURS["pink"], rng))
    predictor = []

    def predictor_factory():
        if not predictor:
            predictor.append(acoustic.checkpoint_predictor(layout.checkpoints, config.alphabet))
        return predictor[0]

    spec = scorer_spec(layout.scorer, config.alphabet, config.beam_width)
    scores, started = [], time.perf_counter()
    print(f"\ndemo: robustness sets from the test clips, in {layout.robustness}")
    for degradation in (*sets.degradations(noise), other_engine_set()):
        csv = sets.make_set(degradation, layout.cv_csv("test"), layout.robustness, config.random_seed,
                            progress=config.progress)
        outputs = acoustic.cached_split_outputs(csv, layout.tmp / f"acoustic_robustness_{degradation.name}.npz",
                                                predictor_factory, model_files, f"{degradation.name} acoustic model",
                                                config.progress)
        scores.append(sets.score_set(degradation, outputs.transcripts, outputs.probabilities, spec, alpha, beta,
                                     config.progress).as_dict())
    print(f"  {len(scores)} sets made and scored in {time.perf_counter() - started:.0f} s")
    write_json_atomic(layout.reports / ROBUSTNESS_REPORT_FILE, {"lm_alpha": alpha, "lm_beta": beta, "sets": scores})
    sets.plot_scores(layout.reports / ROBUSTNESS_FIGURE, scores, ROBUST_WER_GOAL)
    return scores


def goal_table(clean: dict, scores: list[dict]) -> list[dict]:
    goals = [{"goal": "clean greedy CER", "value": clean["greedy"]["cer"], "limit": CER_GOAL},
             {"goal": "clean scorer WER", "value": clean["with_scorer"]["wer"], "limit": WER_GOAL}]
    goals += [{"goal": f"{s['label']} scorer WER", "value": s["with_scorer"]["wer"], "limit": ROBUST_WER_GOAL}
              for s in scores if s["goal"]]
    return [dict(goal, met=goal["value"] <= goal["limit"]) for goal in goals]


def print_table(clean: dict, scores: list[dict], goals: list[dict]) -> None:
    print(f"\n  {'set':34} {'greedy WER':>10} {'CER':>6}   {'scorer WER':>10} {'CER':>6}")
    for label, row in [("clean", clean), *((s["label"], s) for s in scores)]:
        print(f"  {label:34} {row['greedy']['wer']:10.1%} {row['greedy']['cer']:6.1%}   "
              f"{row['with_scorer']['wer']:10.1%} {row['with_scorer']['cer']:6.1%}")
    for s in scores:
        if not s["goal"]:
            print(f"  {s['label']}: measured only; the goals are for the degraded test clips")
    print("\ndemo goals:")
    for goal in goals:
        print(f"  {goal['goal']:40} {goal['value']:6.1%} <= {goal['limit']:4.0%}  "
              f"{'met' if goal['met'] else 'NOT met'}")


def machine_figures(layout) -> dict:
    """The float32 matmul rate measured now, and the seconds since `make demo` began (when it left its mark)."""
    from deepspeech_it.util.machine import matmul_rate

    figures = {"matmul_float32_gflops": round(matmul_rate(size=MATMUL_SIZE, trials=MATMUL_TRIALS) / 1e9, 1),
               "demo_seconds": None}
    try:
        figures["demo_seconds"] = round(time.time() - float(layout.demo_started.read_text().strip()))
    except (OSError, ValueError):
        pass
    return figures


def machine_line(machine: dict) -> str:
    seconds = machine["demo_seconds"]
    took = f"took {seconds // 60:.0f} min {seconds % 60:.0f} s" if seconds is not None else "time not recorded"
    return f"{took} on a machine doing {machine['matmul_float32_gflops']:.0f} GFLOP/s (float32 matmul)"
