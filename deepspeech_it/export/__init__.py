"""Export: the TFLite inference graph and SavedModel, the real native clients, the release, and transcription."""
