"""The distributed pieces of a training step: DeepSpeech's CTC loss, the replica step functions (over weighted
shares, see ``dataset.replica_shares``) and the optimizer (Adam with DeepSpeech's constants, loss-scaled for
float16)."""

from __future__ import annotations

from deepspeech_it.model.checkpoint import BETA1, BETA2, EPSILON
from deepspeech_it.model.network import DeepSpeech
from deepspeech_it.util.tf_runtime import keras, tf


def sparse_labels(labels: tf.Tensor, label_len: tf.Tensor) -> tf.SparseTensor:
    mask = tf.sequence_mask(label_len, tf.shape(labels)[1])
    indices = tf.where(mask)
    return tf.SparseTensor(indices, tf.gather_nd(labels, indices), tf.shape(labels, out_type=tf.int64))


def ctc_per_utterance(logits: tf.Tensor, logit_len: tf.Tensor, labels: tf.Tensor, label_len: tf.Tensor):
    """DeepSpeech's loss: CTC on raw logits with the blank as the last class (TF2 defaults to 0, hence -1)."""
    return tf.nn.ctc_loss(labels=sparse_labels(labels, label_len), logits=tf.cast(logits, tf.float32),
                          label_length=None, logit_length=logit_len, logits_time_major=False, blank_index=-1)


def agree_on_overflow(gradients):
    """Keras' LossScaleOptimizer decides per replica, on local gradients, whether to skip a step, while the update
    sums gradients over all replicas: one replica's overflow would reach every weight. Make every replica's local
    gradients non-finite when any replica's are, so all of them skip the step and lower the scale together."""
    local_finite = tf.reduce_all([tf.reduce_all(tf.math.is_finite(g)) for g in gradients])
    overflowing = tf.distribute.get_replica_context().all_reduce(
        tf.distribute.ReduceOp.SUM, 1.0 - tf.cast(local_finite, tf.float32))
    poison = tf.where(overflowing > 0, float("nan"), 0.0)
    return [g + tf.cast(poison, g.dtype) for g in gradients]


class Steps:
    """The compiled, distributed train and eval steps for one model/optimizer pair."""

    def __init__(self, strategy, model: DeepSpeech, optimizer, element_spec):
        self.strategy, self.model, self.optimizer = strategy, model, optimizer
        self.train = tf.function(self._train, input_signature=[element_spec, tf.TensorSpec([], tf.int64)])
        self.evaluate = tf.function(self._evaluate, input_signature=[element_spec])

    def _replica_train(self, mfcc, mfcc_len, labels, label_len, seconds, weight, step):
        utterances = tf.reduce_sum(weight)
        # Mean over the global batch, which the last batch of an epoch may not fill; fillers weigh 0.
        total = tf.distribute.get_replica_context().all_reduce(tf.distribute.ReduceOp.SUM, utterances)
        variables = self.model.trainable_variables
        with tf.GradientTape() as tape:
            losses = ctc_per_utterance(self.model(mfcc, training=True, step=step), mfcc_len, labels,
                                       label_len) * weight
            loss = tf.reduce_sum(losses) / tf.maximum(total, 1.0)
            scaled = self.optimizer.scale_loss(loss)
        gradients = tape.gradient(scaled, variables)
        if isinstance(self.optimizer, keras.optimizers.LossScaleOptimizer) and self.strategy.num_replicas_in_sync > 1:
            gradients = agree_on_overflow(gradients)
        self.optimizer.apply(gradients, variables)
        return tf.reduce_sum(losses), utterances, tf.reduce_sum(seconds * weight)

    def _replica_eval(self, mfcc, mfcc_len, labels, label_len, seconds, weight):
        losses = ctc_per_utterance(self.model(mfcc, training=False), mfcc_len, labels, label_len) * weight
        return tf.reduce_sum(losses), tf.reduce_sum(weight), tf.reduce_sum(seconds * weight)

    def _reduce(self, results):
        return [self.strategy.reduce(tf.distribute.ReduceOp.SUM, r, axis=None) for r in results]

    def _train(self, batch, step):
        # The global step picks the dropout masks (see DeepSpeech._drop).
        return self._reduce(self.strategy.run(self._replica_train, args=(*batch, step)))

    def _evaluate(self, batch):
        return self._reduce(self.strategy.run(self._replica_eval, args=batch))


def make_optimizer(learning_rate: float, float16: bool):
    # DeepSpeech's AdamOptimizer(beta1 0.9, beta2 0.999, epsilon 1e-8); float16 needs dynamic loss scaling.
    adam = keras.optimizers.Adam(learning_rate=learning_rate, beta_1=BETA1, beta_2=BETA2, epsilon=EPSILON)
    return keras.optimizers.LossScaleOptimizer(adam) if float16 else adam


def inner_optimizer(optimizer):
    return getattr(optimizer, "inner_optimizer", optimizer)
