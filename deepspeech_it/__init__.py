"""Shared code of the Italian DeepSpeech pipeline: configuration, data preparation, language model, acoustic model,
decoding and export, each in a module named for what it does."""

__version__ = "0.1.0"
