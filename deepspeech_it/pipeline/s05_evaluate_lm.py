"""Stage 05 as the pipeline runs it: lm_alpha/lm_beta chosen on the dev set with the scorer, the test set decoded
once with the choice, and the chosen pair written into the scorer's header."""

from __future__ import annotations

import json
from pathlib import Path

from deepspeech_it.config import Config
from deepspeech_it.data import csvfile
from deepspeech_it.data.corpora import training_csvs
from deepspeech_it.pipeline.runner import StageError


def evaluate_lm(cfg: Config) -> None:
    layout = cfg.layout
    layout.create()
    scorer = layout.scorer
    csvs = training_csvs(cfg)
    dev_csvs, test_csvs = csvs["dev"], csvs["test"]
    for path in [scorer, *dev_csvs, *test_csvs]:
        if not Path(path).is_file():
            raise StageError(f"{path} is missing; run the earlier stages first (make import-cv, make build-lm, make train-model)")
    # Imported only now: TensorFlow (behind the checkpoint reader) takes seconds to load and a wrong setting
    # should stop the run at once.
    from deepspeech_it.decode.ctc import scorer_spec
    from deepspeech_it.evaluate import acoustic_outputs as acoustic
    from deepspeech_it.evaluate.alpha_beta import (EvaluationPaths, SearchPlan, scorer_digest_without_weights,
                                                   tune_alpha_beta)
    from deepspeech_it.lm.scorer import ScorerError, read_scorer, set_default_alpha_beta
    from deepspeech_it.model.checkpoint import CheckpointError, bundle_files, resolve_checkpoint
    from deepspeech_it.pipeline.records import StageRecord, fingerprint

    try:
        checkpoint = resolve_checkpoint(layout.checkpoints)
        package = read_scorer(scorer)
    except (CheckpointError, ScorerError) as problem:
        raise StageError(str(problem)) from None
    model_files = bundle_files(checkpoint)

    params = {"beam_width": cfg.beam_width, "lm_evaluate_range": cfg.lm_evaluate_range,
              "lm_optimize_trials": cfg.lm_optimize_trials, "lm_alpha_max": cfg.lm_alpha_max,
              "lm_beta_max": cfg.lm_beta_max, "lm_alpha": cfg.lm_alpha, "lm_beta": cfg.lm_beta,
              "random_seed": cfg.random_seed, "scorer": scorer_digest_without_weights(scorer, package.kenlm_size)}
    fp = fingerprint(params, [*dev_csvs, *test_csvs, *model_files, cfg.alphabet_path])
    # What the dev results depend on: a resumed search reuses them only when this is unchanged.
    search_fp = fingerprint({k: params[k] for k in ("beam_width", "scorer")}, [*dev_csvs, *model_files])
    record = StageRecord(layout.reports, "evaluate_lm")
    if record.is_current(fp):
        print(f"stage 05: {layout.lm / 'best_alpha_beta.json'} is up to date, skipped")
        return
    csvfile.check([*dev_csvs, *test_csvs], cfg.alphabet)
    record.mark_running(fp)

    predictor = []   # built on first use only: a fresh cache never needs TensorFlow

    def predictor_factory():
        if not predictor:
            predictor.append(acoustic.checkpoint_predictor(layout.checkpoints, cfg.alphabet))
        return predictor[0]

    def loader(split: str, csvs: list[Path]):
        def load():
            return acoustic.concat_outputs([
                acoustic.cached_split_outputs(Path(csv), layout.tmp / f"acoustic_{split}_{i}_{Path(csv).stem}.npz",
                                              predictor_factory, model_files, f"{split} acoustic model",
                                              cfg.progress)
                for i, csv in enumerate(csvs)])
        return load

    paths = EvaluationPaths(results_csv=layout.reports / "lm_eval.csv", plot=layout.reports / "lm_eval.png",
                            best_json=layout.lm / "best_alpha_beta.json",
                            test_json=layout.reports / "test_scorer.json",
                            journal=layout.tmp / "lm_eval_grid.jsonl", study=layout.lm / "lm_optimize.sqlite")
    plan = SearchPlan(pairs=cfg.lm_evaluate_range, trials=cfg.lm_optimize_trials, alpha_max=cfg.lm_alpha_max,
                      beta_max=cfg.lm_beta_max, default_pair=(cfg.lm_alpha, cfg.lm_beta), seed=cfg.random_seed)
    summary = tune_alpha_beta(scorer_spec(scorer, cfg.alphabet, cfg.beam_width, package), loader("dev", dev_csvs),
                          loader("test", test_csvs), plan, paths, fingerprint=json.dumps(search_fp, sort_keys=True), jobs=None,
                          progress=cfg.progress,
                          rewrite_header=lambda alpha, beta: set_default_alpha_beta(scorer, alpha, beta))
    best = summary["best"]
    print(f"stage 05: {summary['search']} search, {summary['pairs_tried']} pair(s) on dev; chosen lm_alpha="
          f"{best['alpha']:g} lm_beta={best['beta']:g} (dev WER {best['wer']:.4f}, CER {best['cer']:.4f})")
    print(f"  test WER {summary['test_with_scorer']['wer']:.4f} CER {summary['test_with_scorer']['cer']:.4f} "
          f"with the scorer; WER {summary['test_without_scorer']['wer']:.4f} CER "
          f"{summary['test_without_scorer']['cer']:.4f} without (greedy)")
    print(f"  {scorer} header now carries the chosen pair; reports in {layout.reports}")
    record.mark_done(fp, outputs=[paths.results_csv, paths.plot, paths.best_json, paths.test_json, scorer],
                     summary=summary)
