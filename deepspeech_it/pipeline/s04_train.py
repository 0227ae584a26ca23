"""Stage 04 as the pipeline runs it: configuration -> training parameters, stage record, training, report."""

from __future__ import annotations

import tempfile
from dataclasses import asdict, replace
from pathlib import Path

from deepspeech_it.config import ALPHABET_FILE, Config
from deepspeech_it.data import csvfile
from deepspeech_it.data.corpora import corpus_test_csvs, training_csvs
from deepspeech_it.model import features
from deepspeech_it.model.checkpoint import CheckpointError
from deepspeech_it.model.distribute import Workers, one_line_errors
from deepspeech_it.model.trainer import TrainingError, TrainParams
from deepspeech_it.model.training import train_and_test
from deepspeech_it.pipeline.records import StageRecord, fingerprint
from deepspeech_it.pipeline.runner import StageError

# FAST_TRAIN: one epoch on one batch of each split. The model keeps its size so that its checkpoints stay usable
# by the export stage and never clash with a full run's.
FAST_TRAIN_EPOCHS = 1


def training_params(config: Config) -> TrainParams:
    layout = config.layout
    return TrainParams(
        n_hidden=config.n_hidden, dropout=config.dropout, learning_rate=config.learning_rate,
        lr_schedule=config.lr_schedule, lr_tail_epochs=config.lr_tail_epochs,
        batch_size=config.batch_size, sorted_epochs=config.sorted_epochs,
        epochs=FAST_TRAIN_EPOCHS if config.fast_train else config.epochs,
        early_stop=config.early_stop, es_epochs=config.es_epochs, reduce_lr_on_plateau=config.reduce_lr_on_plateau,
        plateau_epochs=config.plateau_epochs, plateau_reduction=config.plateau_reduction,
        random_seed=config.random_seed, max_to_keep=config.max_to_keep, amp=config.amp,
        checkpoint_secs=config.checkpoint_secs,
        transfer_checkpoint=config.transfer_checkpoint_dir if config.transfer_learning else None,
        drop_source_layers=config.drop_source_layers,
        feature_cache=layout.tmp / "feature_cache" if config.feature_cache else None,
        augment=config.augment)


def deepspeech_flags(params: TrainParams, config: Config) -> dict:
    """flags.txt/flags.json beside the checkpoints: DeepSpeech/Coqui flag names where one exists (Coqui STT reads
    ``n_hidden`` and ``alphabet_config_path`` from it), then this project's variables."""
    return {
        "n_hidden": params.n_hidden, "train_batch_size": params.batch_size, "epochs": params.epochs,
        "learning_rate": params.learning_rate, "dropout_rate": params.dropout, "random_seed": params.random_seed,
        "early_stop": params.early_stop, "es_epochs": params.es_epochs, "max_to_keep": params.max_to_keep,
        "reduce_lr_on_plateau": params.reduce_lr_on_plateau, "plateau_epochs": params.plateau_epochs,
        "plateau_reduction": params.plateau_reduction, "automatic_mixed_precision": params.amp,
        "drop_source_layers": params.drop_source_layers if params.transfer_checkpoint else 0,
        "alphabet_config_path": ALPHABET_FILE, "audio_sample_rate": features.SAMPLE_RATE,
        "feature_win_len": 32, "feature_win_step": 20, "n_steps": 16,
        "augment": [a.text for a in params.augment],
        "project_variables": config.as_dict(),
    }


def csv_inputs(config: Config) -> dict[str, list[Path]]:
    splits = training_csvs(config)
    for paths in [*splits.values(), list(corpus_test_csvs(config).values())]:
        for path in paths:
            if not Path(path).is_file():
                raise StageError(f"{path} is missing: run stage 02 (make import-cv) first")
    return splits


def check_data(splits: dict[str, list[Path]], config: Config) -> None:
    """Every clip of the CSVs exists at its recorded size and every transcript is encodable, before training."""
    csvfile.check([p for paths in splits.values() for p in paths], config.alphabet)


def train(config: Config) -> int:
    # The cluster first: a host that stops before joining it would leave the others waiting for it.
    with one_line_errors(config.tf_config), tempfile.TemporaryDirectory(prefix="features-") as private:
        workers = Workers(config.tf_config)
        code = _train(config, workers, Path(private))
        workers.barrier()
    return code


def _train(config: Config, workers: Workers, private_folder: Path) -> int:
    """Only the chief writes into DATA_DIR; another host caches features (if asked to) in PRIVATE_FOLDER."""
    layout = config.layout
    if workers.chief:
        layout.create()
    splits = csv_inputs(config)
    corpus_tests = corpus_test_csvs(config)
    params = training_params(config)
    if not workers.chief and params.feature_cache is not None:
        params = replace(params, feature_cache=private_folder)
    record = StageRecord(layout.checkpoints, "train")
    fp = _fingerprint(config, params, splits, corpus_tests) if workers.chief else None
    if workers.from_chief(workers.chief and record.is_current(fp)):
        print(f"stage 04: {layout.checkpoints} is up to date, skipped")
        return 0
    check_data({**splits, "corpus tests": list(corpus_tests.values())}, config)
    if workers.chief:
        record.mark_running(fp)
    try:
        summary = train_and_test(
            splits["train"], splits["dev"], splits["test"], config.alphabet, params, layout.checkpoints,
            layout.tboard_logs, layout.reports, progress_enabled=config.progress, workers=workers,
            flags=deepspeech_flags(params, config), limit=config.batch_size if config.fast_train else None,
            corpus_tests={corpus: ([path], layout.corpus_test_report(corpus)) for corpus, path in corpus_tests.items()})
    except (CheckpointError, TrainingError) as problem:
        raise StageError(str(problem)) from None
    if not workers.chief:
        print(f"stage 04: {workers.name} done, {summary['epochs_run']} epoch(s) run, step {summary['global_step']}; "
              "the chief writes the checkpoints and reports")
        return 0
    outputs = [layout.checkpoints / "checkpoint", layout.checkpoints / "flags.json",
               layout.checkpoints / ALPHABET_FILE, layout.reports / "training_loss.png"]
    if "test_wer" in summary:
        outputs.append(layout.reports / "test_greedy.json")
    outputs += [layout.corpus_test_report(corpus) for corpus in summary.get("corpus_tests", {})]
    record.mark_done(fp, outputs=outputs, summary=summary)
    print(f"stage 04: {summary['epochs_run']} epoch(s) run, step {summary['global_step']}, "
          f"best {summary.get('best_checkpoint', '-')}, test WER {summary.get('test_wer', float('nan')):.3f} "
          f"CER {summary.get('test_cer', float('nan')):.3f} (greedy)")
    for corpus, result in summary.get("corpus_tests", {}).items():
        print(f"  {corpus} test: WER {result['wer']:.3f} CER {result['cer']:.3f} over {result['utterances']} "
              "utterances (greedy)")
    return 0


def _fingerprint(config: Config, params: TrainParams, splits: dict[str, list[Path]],
                 corpus_tests: dict[str, Path]) -> dict:
    inputs = [p for paths in splits.values() for p in paths] + list(corpus_tests.values()) + [config.alphabet_path]
    if params.transfer_checkpoint is not None:
        source = Path(params.transfer_checkpoint)
        if not source.is_dir():
            raise StageError(f"TRANSFER_CHECKPOINT_DIR={source} is not a folder (TRANSFER_LEARNING=1)")
        inputs += sorted(source.glob("*checkpoint")) + sorted(source.glob("*.index"))
    recorded = {k: str(v) if isinstance(v, Path) else v for k, v in asdict(params).items()}
    recorded["fast_train"] = config.fast_train
    recorded["augment"] = [a.text for a in params.augment]
    return fingerprint(recorded, inputs)
