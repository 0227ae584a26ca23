"""The language model: LM text preparation, the KenLM programs, and DeepSpeech's scorer package."""
