"""The training loop: epochs over size-bucketed batches, dev loss, checkpoints, early stopping, learning-rate
reduction and everything a resume needs (see ``Progress``)."""

from __future__ import annotations

import hashlib
import logging
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import progressbar

from deepspeech_it.data.alphabet import Alphabet
from deepspeech_it.model.augment import Augmenter
from deepspeech_it.model.checkpoint import (BEST_PREFIX, BEST_STATE_FILE, TRAIN_PREFIX, latest_checkpoint,
                                            load_training_state, optimizer_counters, read_progress, resolve_checkpoint,
                                            restore_optimizer_counters, save_checkpoint, training_tensors,
                                            write_companions)
from deepspeech_it.model.dataset import EpochClock, Sample, batch_plan, make_dataset, training_plan
from deepspeech_it.model.distribute import Workers
from deepspeech_it.model import network
from deepspeech_it.model.network import MIN_BFLOAT16_SPEEDUP, build_model, keras_policy, on_gpu
from deepspeech_it.model.steps import Steps, inner_optimizer, make_optimizer
from deepspeech_it.util.errors import PipelineError
from deepspeech_it.util.plots import pyplot, save_figure
from deepspeech_it.util.progress import bars_wanted
from deepspeech_it.util.tf_runtime import keras, tf

log = logging.getLogger(__name__)

# DeepSpeech's --es_min_delta: a dev loss must beat the best by this much to count as an improvement.
MIN_DELTA = 0.05


# The falling schedules end at this fraction of LEARNING_RATE rather than at 0, so that the last batches still learn.
FINAL_FRACTION = 0.01


class TrainingError(PipelineError, RuntimeError):
    pass


def scheduled_rate(learning_rate: float, schedule: str, position: float, tail_fraction: float = 1.0) -> float:
    """The learning rate at POSITION, the fraction of all epochs done (0 to 1): constant (DeepSpeech's); falling
    along a half cosine to FINAL_FRACTION of it at the end; or, for "tail", constant until the last TAIL_FRACTION
    of the training and from there falling in a straight line to FINAL_FRACTION of it."""
    if schedule == "constant":
        return learning_rate
    if schedule == "cosine":
        fraction = min(max(position, 0.0), 1.0)
        return learning_rate * (FINAL_FRACTION + (1.0 - FINAL_FRACTION) * 0.5 * (1.0 + math.cos(math.pi * fraction)))
    fraction = min(max((position - (1.0 - tail_fraction)) / tail_fraction, 0.0), 1.0)
    return learning_rate * (1.0 - (1.0 - FINAL_FRACTION) * fraction)


@dataclass(frozen=True)
class TrainParams:
    n_hidden: int = 2048
    dropout: float = 0.4
    learning_rate: float = 1e-4
    lr_schedule: str = "constant"               # or "cosine" or "tail": see scheduled_rate
    lr_tail_epochs: int = 3                     # "tail": the last epochs, over which the rate falls
    batch_size: int = 64
    epochs: int = 30
    sorted_epochs: int = 1                      # epochs in order of length before shuffled ones (SortaGrad)
    early_stop: bool = True
    es_epochs: int = 10
    reduce_lr_on_plateau: bool = False
    plateau_epochs: int = 10
    plateau_reduction: float = 0.1
    random_seed: int = 4568
    max_to_keep: int = 5
    amp: bool = True
    checkpoint_secs: int = 600
    transfer_checkpoint: Path | None = None     # set: start from it (unless our own checkpoint exists)
    drop_source_layers: int = 1
    feature_cache: Path | None = None           # set: MFCC cached in this folder
    augment: tuple = ()                         # AUGMENT's augmentations (training batches only)


@dataclass
class Progress:
    """What a resume needs beyond the DeepSpeech variables; stored beside each checkpoint."""

    epoch: int = 0                  # epochs completed
    batch: int = 0                  # batches of the current epoch completed
    epoch_loss_sum: float = 0.0     # per-utterance CTC losses of the current epoch so far
    epoch_utterances: int = 0
    train_losses: list = field(default_factory=list)
    dev_losses: list = field(default_factory=list)
    best_dev_loss: float | None = None
    epochs_without_improvement: int = 0
    plan_key: str = ""              # the training set the position refers to
    trained_seconds: float = 0.0    # audio seconds trained on, over all epochs
    optimizer: dict = field(default_factory=dict)   # checkpoint.optimizer_counters
    rate_scale: float = 1.0         # plateau reductions so far, under a falling schedule

    @classmethod
    def from_dict(cls, data: dict | None) -> "Progress":
        known = {k: v for k, v in (data or {}).items() if k in cls.__dataclass_fields__}
        return cls(**known)


@dataclass(frozen=True)
class TrainResult:
    epochs_run: int
    global_step: int
    train_losses: list
    dev_losses: list
    best_checkpoint: Path | None
    stopped_early: bool
    audio_hours_per_second: float


class Trainer:
    def __init__(self, train_samples: list[Sample], dev_samples: list[Sample], alphabet: Alphabet,
                 params: TrainParams, checkpoint_dir: Path, tboard_dir: Path, reports_dir: Path,
                 progress_enabled: bool = True, workers: Workers | None = None, flags: dict | None = None):
        if not train_samples:
            raise TrainingError("no usable training utterances")
        self.train_samples, self.dev_samples = train_samples, dev_samples
        self.alphabet, self.params = alphabet, params
        self.checkpoint_dir, self.tboard_dir, self.reports_dir = checkpoint_dir, tboard_dir, reports_dir
        self.progress_enabled = progress_enabled
        self.flags = flags or {}
        self.workers = workers or Workers()
        self.strategy, self.chief = self.workers.strategy, self.workers.chief
        keras.utils.set_random_seed(params.random_seed)
        # One precision for the cluster, the chief's: hosts with other CPUs could choose differently on their own.
        policy = self.workers.from_chief(keras_policy(params.amp, on_gpu()))
        with self.strategy.scope():
            self.model = build_model(alphabet.size + 1, n_hidden=params.n_hidden, dropout=params.dropout,
                                     dtype_policy=policy, seed=params.random_seed)
            self.optimizer = make_optimizer(params.learning_rate, float16=policy == "mixed_float16")
            self.optimizer.build(self.model.trainable_variables)
        if params.amp and not on_gpu():
            # The figure keras_policy decided by, read where it reads it.
            log.info("AMP=1 on a CPU: bfloat16 matmul runs %.2fx as fast as float32 here; training runs in %s "
                     "(bfloat16 from %.1fx%s)", network.bfloat16_speedup(),
                     "bfloat16" if policy == "mixed_bfloat16" else "float32", MIN_BFLOAT16_SPEEDUP,
                     ", the chief's choice on every host" if self.workers.several else "")
        if not on_gpu():
            log.info("LSTM time loop: %s", network.recurrence_for(self.model.lstm.compute_dtype, params.n_hidden)[1])
        self.augmenter = Augmenter(params.augment, params.random_seed)
        self.global_step = 0
        self.progress = Progress()
        self.steps: Steps | None = None
        self.plan_key = hashlib.sha1("\n".join(f"{s.path}|{s.size}|{s.transcript}" for s in train_samples)
                                     .encode()).hexdigest()

    # -- state -------------------------------------------------------------------------------------------------

    def restore(self) -> str:
        """Our own latest checkpoint, else the transfer checkpoint, else fresh weights; says which. Only the chief
        reads checkpoints; the other hosts take its state, so that every host starts from the same one."""
        said = self._restore() if self.chief else ""
        if self.workers.several:
            variables = list({id(v): v for v in self.model.weights + self.optimizer.variables}.values())
            self.workers.share_variables(variables)
            state = self.workers.from_chief({"global_step": self.global_step, "progress": asdict(self.progress)})
            self.global_step, self.progress = state["global_step"], Progress.from_dict(state["progress"])
        return said or (f"{self.workers.name}: took the chief's training state (epoch {self.progress.epoch}, "
                        f"batch {self.progress.batch})")

    def _restore(self) -> str:
        own = latest_checkpoint(self.checkpoint_dir)
        if own is not None:
            report = load_training_state(self.model, self.optimizer, own)
            self.global_step = report.global_step
            self.progress = Progress.from_dict(read_progress(own))
            restore_optimizer_counters(self.optimizer, self.progress.optimizer)
            if self.progress.plan_key != self.plan_key:
                # Other training data: the position inside the epoch refers to another plan.
                self.progress.batch, self.progress.epoch_loss_sum, self.progress.epoch_utterances = 0, 0.0, 0
            return f"resumed from {own.name} (epoch {self.progress.epoch}, batch {self.progress.batch})"
        if self.params.transfer_checkpoint is not None:
            source = resolve_checkpoint(self.params.transfer_checkpoint)
            report = load_training_state(self.model, self.optimizer, source,
                                         drop_source_layers=self.params.drop_source_layers,
                                         learning_rate=self.params.learning_rate)
            self.global_step = report.global_step
            dropped = sorted({n.rsplit("/", 1)[0] for n in report.initialised if "Adam" not in n})
            return (f"transfer learning from {source} (step {report.global_step}); re-initialised: "
                    f"{', '.join(dropped) or 'nothing'}")
        return "starting from fresh weights"

    def save(self, kind: str) -> Path | None:
        if not self.chief:
            return None
        tensors = training_tensors(self.model, self.optimizer, self.global_step)
        self.progress.plan_key = self.plan_key
        self.progress.optimizer = optimizer_counters(self.optimizer)
        keep = self.params.max_to_keep if kind == TRAIN_PREFIX else 1
        return save_checkpoint(self.checkpoint_dir, kind, tensors, asdict(self.progress), keep)

    @property
    def learning_rate(self) -> float:
        return float(inner_optimizer(self.optimizer).learning_rate.numpy())

    def _schedule_rate(self, position: float) -> None:
        if self.params.lr_schedule != "constant":
            rate = scheduled_rate(self.params.learning_rate * self.progress.rate_scale, self.params.lr_schedule,
                                  position, min(self.params.lr_tail_epochs / self.params.epochs, 1.0))
            inner_optimizer(self.optimizer).learning_rate.assign(rate)

    def _reduce_rate(self) -> float:
        """A plateau's reduction: of the rate itself, or under a schedule of the scale the schedule applies to."""
        if self.params.lr_schedule != "constant":
            self.progress.rate_scale *= self.params.plateau_reduction
        new_rate = self.learning_rate * self.params.plateau_reduction
        inner_optimizer(self.optimizer).learning_rate.assign(new_rate)
        return new_rate

    # -- data --------------------------------------------------------------------------------------------------

    def _distributed(self, samples, plan, skip=0, clock: EpochClock | None = None):
        """Batches of SAMPLES from batch SKIP of PLAN on; given a CLOCK, they are training batches and augmented."""
        distributed = self.workers.distribute(
            lambda shard: make_dataset(samples, plan, self.alphabet, shard, self.params.feature_cache,
                                       skip_batches=skip, clock=clock))
        if self.steps is None:
            self.steps = Steps(self.strategy, self.model, self.optimizer, distributed.element_spec)
        return distributed

    def dev_loss(self) -> float | None:
        if not self.dev_samples:
            return None
        plan = batch_plan(len(self.dev_samples), self.params.batch_size, 0, 0, shuffle=False)
        loss_sum, count = 0.0, 0.0
        for batch in self._distributed(self.dev_samples, plan):
            batch_loss, utterances, _ = self.steps.evaluate(batch)
            loss_sum, count = loss_sum + float(batch_loss), count + float(utterances)
        return loss_sum / max(count, 1.0)

    # -- epochs ------------------------------------------------------------------------------------------------

    def run(self) -> TrainResult:
        started = self.progress.epoch
        last_save = time.monotonic()
        seconds_this_run, train_time = 0.0, 0.0
        writer = tf.summary.create_file_writer(str(self.tboard_dir)) if self.chief else None
        if self.chief:
            write_companions(self.checkpoint_dir, self.flags, self.alphabet.to_text())
        stopped_early = self._should_stop_early()
        while self.progress.epoch < self.params.epochs and not stopped_early:
            epoch = self.progress.epoch
            plan, clock = training_plan(self.train_samples, self.params.batch_size, self.params.random_seed, epoch,
                                        self.augmenter, self.params.epochs, self.params.sorted_epochs)
            bar = self._bar(len(plan), epoch)
            bar.start(init=False)
            bar.update(self.progress.batch)
            epoch_started = time.monotonic()
            for batch in self._distributed(self.train_samples, plan, skip=self.progress.batch, clock=clock):
                self._schedule_rate((epoch + self.progress.batch / len(plan)) / self.params.epochs)
                batch_loss, utterances, seconds = self.steps.train(batch, tf.constant(self.global_step, tf.int64))
                self.global_step += 1
                self.progress.batch += 1
                self.progress.epoch_loss_sum += float(batch_loss)
                self.progress.epoch_utterances += int(utterances)
                self.progress.trained_seconds += float(seconds)
                seconds_this_run += float(seconds)
                elapsed = time.monotonic() - epoch_started
                bar.update(self.progress.batch, loss=self.progress.epoch_loss_sum / self.progress.epoch_utterances,
                           rate=seconds_this_run / 3600 / max(train_time + elapsed, 1e-9))
                if time.monotonic() - last_save >= self.params.checkpoint_secs:
                    self.save(TRAIN_PREFIX)
                    last_save = time.monotonic()
            train_time += time.monotonic() - epoch_started
            bar.finish(dirty=True)
            stopped_early = self._end_epoch(writer, seconds_this_run / 3600 / max(train_time, 1e-9))
            self.save(TRAIN_PREFIX)
            last_save = time.monotonic()
            self._plot()
        best = latest_checkpoint(self.checkpoint_dir, BEST_STATE_FILE)
        return TrainResult(self.progress.epoch - started, self.global_step, list(self.progress.train_losses),
                           list(self.progress.dev_losses), best, stopped_early,
                           seconds_this_run / 3600 / max(train_time, 1e-9))

    def _bar(self, batches: int, epoch: int):
        label = f"epoch {epoch + 1}/{self.params.epochs}"
        if not bars_wanted(self.progress_enabled):
            return progressbar.NullBar(max_value=batches)
        widgets = [f"{label} ", progressbar.Percentage(), " ", progressbar.Bar(), " ",
                   progressbar.Variable("loss", format="loss {formatted_value}", precision=4), " ",
                   progressbar.Variable("rate", format="{formatted_value} audio h/s", precision=3), " ",
                   progressbar.ETA()]
        return progressbar.ProgressBar(max_value=batches, widgets=widgets)

    def _end_epoch(self, writer, hours_per_second: float) -> bool:
        """Records the epoch, keeps the best dev checkpoint, applies plateau and early-stopping rules."""
        p = self.progress
        train_loss = p.epoch_loss_sum / max(p.epoch_utterances, 1)
        dev_loss = self.dev_loss()
        p.epoch += 1
        p.batch, p.epoch_loss_sum, p.epoch_utterances = 0, 0.0, 0
        p.train_losses.append(train_loss)
        p.dev_losses.append(dev_loss)
        watched = train_loss if dev_loss is None else dev_loss
        previous_best = p.best_dev_loss
        if previous_best is None or watched < previous_best - MIN_DELTA:
            p.epochs_without_improvement = 0
        else:
            p.epochs_without_improvement += 1
        if previous_best is None or watched < previous_best:
            p.best_dev_loss = watched
            self.save(BEST_PREFIX)
        reduced = ""
        if (self.params.reduce_lr_on_plateau and p.epochs_without_improvement > 0
                and p.epochs_without_improvement % self.params.plateau_epochs == 0):
            new_rate = self._reduce_rate()
            reduced = f", learning rate reduced to {new_rate:.3g}"
        remaining = (self.params.epochs - p.epoch) * (p.trained_seconds / max(p.epoch, 1)) / 3600 / \
            max(hours_per_second, 1e-9)
        log.info("epoch %d/%d: train loss %.3f, dev loss %s, %.4f audio h/s, ETA %s%s", p.epoch, self.params.epochs,
                 train_loss, "-" if dev_loss is None else f"{dev_loss:.3f}", hours_per_second,
                 _duration(remaining), reduced)
        if writer is not None:
            scalars = {"loss/train": train_loss, "learning_rate": self.learning_rate,
                       "audio_hours_per_second": hours_per_second}
            if dev_loss is not None:
                scalars["loss/dev"] = dev_loss
            write_scalars(writer, self.global_step, scalars)
        return self._should_stop_early()

    def _should_stop_early(self) -> bool:
        stop = self.params.early_stop and self.progress.epochs_without_improvement >= self.params.es_epochs
        if stop:
            log.info("early stop: no dev loss improvement larger than %.2f for %d epochs", MIN_DELTA,
                     self.progress.epochs_without_improvement)
        return stop

    def _plot(self) -> None:
        if not self.chief:
            return
        epochs = range(1, len(self.progress.train_losses) + 1)
        figure, axes = pyplot().subplots(figsize=(7, 4))
        axes.plot(epochs, self.progress.train_losses, marker="o", label="train")
        dev = [(e, d) for e, d in zip(epochs, self.progress.dev_losses) if d is not None]
        if dev:
            axes.plot(*zip(*dev), marker="o", label="dev")
        axes.set_xlabel("epoch")
        axes.set_ylabel("CTC loss per utterance")
        axes.set_title("DeepSpeech training")
        axes.legend()
        axes.grid(alpha=0.3)
        self.reports_dir.mkdir(parents=True, exist_ok=True)
        save_figure(figure, self.reports_dir / "training_loss.png")


def write_scalars(writer, step: int, scalars: dict[str, float]) -> None:
    """TensorBoard scalar events. tf.summary.scalar needs the tensorboard package; the event it writes is this
    core summary op tagged for the "scalars" plugin, so the logs need TensorBoard only to be viewed."""
    from tensorflow.core.framework import summary_pb2  # after util.tf_runtime has imported TensorFlow quietly

    metadata = summary_pb2.SummaryMetadata(plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name="scalars"))
    with writer.as_default(step=step):
        for tag, value in scalars.items():
            tf.summary.write(tag, tf.constant(value, tf.float32), metadata=metadata)
    writer.flush()


def _duration(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"
