"""Stage 04's work: train DeepSpeech 0.9.3's acoustic model on TensorFlow 2 (resumable, in DeepSpeech's checkpoint
layout), then the greedy test report of the best checkpoint.

One epoch: the size-bucketed batches of ``dataset.batch_plan`` -> CTC loss (blank last) -> Adam; the global batch is
split across the replicas of a ``tf.distribute`` strategy. Then the dev loss decides the best checkpoint, early
stopping and learning-rate reduction. A ``train-<step>`` checkpoint is written at least every ``checkpoint_secs``
and after each epoch with everything a resume needs (weights, Adam moments, learning rate, step, epoch, position in
the epoch, loss history, counters).
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import numpy as np

from deepspeech_it.data.alphabet import Alphabet
from deepspeech_it.decode.ctc import greedy_decode
from deepspeech_it.evaluate.report import error_rates, worst_utterances
from deepspeech_it.model.checkpoint import latest_checkpoint, load_weights_by_ds_name
from deepspeech_it.model.dataset import Sample, batch_plan, make_dataset, read_csvs
from deepspeech_it.model.distribute import Workers
from deepspeech_it.model.network import DeepSpeech, build_model, set_ds_weights
from deepspeech_it.model.trainer import Trainer, TrainingError, TrainParams
from deepspeech_it.util.atomic import write_json_atomic
from deepspeech_it.util.tf_runtime import tf

log = logging.getLogger(__name__)


def greedy_predictor(model: DeepSpeech):
    """The model's per-frame probabilities as one traced function, reused for every test set."""
    return tf.function(lambda mfcc: tf.nn.softmax(model(mfcc, training=False)), reduce_retracing=True)


def greedy_test_report(predict, samples: list[Sample], alphabet: Alphabet, batch_size: int) -> dict:
    """WER and CER (jiwer, over the whole set) of greedy CTC decoding with PREDICT (see greedy_predictor), and the
    worst utterances by WER."""
    plan = batch_plan(len(samples), batch_size, 0, 0, shuffle=False)
    references, hypotheses = [], []
    order = np.concatenate(plan) if plan else []
    for (mfcc, mfcc_len, *_) in make_dataset(samples, plan, alphabet):
        probabilities = predict(mfcc).numpy()
        for probs, frames in zip(probabilities, mfcc_len.numpy()):
            hypotheses.append(greedy_decode(probs[:frames], alphabet).text)
    references = [samples[i].transcript for i in order]
    if not references:
        return {"utterances": 0}
    wer, cer = error_rates(references, hypotheses)
    worst = worst_utterances([samples[i].path for i in order], references, {"hypothesis": hypotheses})
    return {"utterances": len(references), "wer": wer, "cer": cer, "decoder": "greedy (no language model)",
            "worst": worst}


def evaluate_checkpoint(checkpoint: Path, sets: dict[str, list[Sample]], alphabet: Alphabet, n_hidden: int,
                        batch_size: int) -> dict[str, dict]:
    """The greedy report of each of SETS (name → samples), the checkpoint loaded once."""
    model = build_model(alphabet.size + 1, n_hidden=n_hidden, dropout=0.0)
    set_ds_weights(model, load_weights_by_ds_name(checkpoint))
    predict = greedy_predictor(model)
    return {name: {**greedy_test_report(predict, samples, alphabet, batch_size), "checkpoint": checkpoint.name}
            for name, samples in sets.items()}


def train_and_test(train_csvs, dev_csvs, test_csvs, alphabet: Alphabet, params: TrainParams, checkpoint_dir: Path,
                   tboard_dir: Path, reports_dir: Path, progress_enabled: bool = True,
                   workers: Workers | None = None, flags: dict | None = None, limit: int | None = None,
                   corpus_tests: dict[str, tuple[list[Path], Path]] | None = None) -> dict:
    """Trains (resuming whatever is there), then writes ``reports/test_greedy.json`` and the greedy report of each
    of ``corpus_tests`` (name → its test CSVs and the report to write: each corpus's own test set); returns a
    summary.

    ``limit`` keeps only the first (shortest) utterances of each split, for a quick trial run. With several hosts
    only the chief evaluates the test set and writes.
    """
    workers = workers or Workers()
    train, rejected = read_csvs(train_csvs, alphabet)
    dev, rejected_dev = read_csvs(dev_csvs, alphabet)
    test, rejected_test = read_csvs(test_csvs, alphabet)
    if limit is not None:
        train, dev, test = train[:limit], dev[:limit], test[:limit]
    for sample, why in rejected + rejected_dev + rejected_test:
        log.warning("skipping %s: %s", sample.path.name, why)
    log.info("%d train (%.2f h), %d dev, %d test utterances", len(train), sum(s.seconds for s in train) / 3600,
             len(dev), len(test))
    _check_same_data(workers, train + dev)
    trainer = Trainer(train, dev, alphabet, params, checkpoint_dir, tboard_dir, reports_dir, progress_enabled,
                      workers, flags)
    log.info("%s", trainer.restore())
    result = trainer.run()
    summary = {"epochs_run": result.epochs_run, "global_step": result.global_step,
               "train_losses": result.train_losses, "dev_losses": result.dev_losses,
               "stopped_early": result.stopped_early,
               "audio_hours_per_second": result.audio_hours_per_second,
               "skipped_utterances": len(rejected) + len(rejected_dev) + len(rejected_test)}
    best = result.best_checkpoint or latest_checkpoint(checkpoint_dir)
    if workers.chief and best is not None and test:
        corpus_tests = corpus_tests or {}
        sets = {name: read_csvs(csvs, alphabet)[0][:limit] for name, (csvs, _) in corpus_tests.items()}
        reports = evaluate_checkpoint(best, {"": test, **{name: s for name, s in sets.items() if s}}, alphabet,
                                      params.n_hidden, params.batch_size)
        report = reports.pop("")
        write_json_atomic(reports_dir / "test_greedy.json", report)
        log.info("test (greedy, %s): WER %.3f, CER %.3f over %d utterances", best.name, report["wer"],
                 report["cer"], report["utterances"])
        summary.update(test_wer=report["wer"], test_cer=report["cer"], best_checkpoint=best.name)
        for name, corpus_report in reports.items():
            write_json_atomic(corpus_tests[name][1], corpus_report)
        if reports:
            summary["corpus_tests"] = {name: {key: r[key] for key in ("utterances", "wer", "cer")}
                                       for name, r in reports.items()}
    return summary


def _check_same_data(workers: Workers, samples: list[Sample]) -> None:
    """Every host must train on what the chief trains on, or their plans of batches would differ."""
    if not workers.several:
        return
    digest = hashlib.sha256("\n".join(f"{s.path.name}|{s.size}|{s.transcript}" for s in samples).encode()).hexdigest()
    same = workers.from_chief(digest) == digest
    if not workers.all_agree(same):
        whose = "this host's" if not same else "another host's"
        raise TrainingError(f"{workers.name}: {whose} train/dev data differ from the chief's: every host needs the "
                            "same DATA_DIR content (or the same shared folder)")
