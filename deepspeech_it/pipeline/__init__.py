"""The pipeline's six stages, one module each, and what they share: stage records, the runner, preflight checks."""
