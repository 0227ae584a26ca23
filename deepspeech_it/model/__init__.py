"""The acoustic model: features, DeepSpeech's network, its checkpoints, the input pipeline and training."""
