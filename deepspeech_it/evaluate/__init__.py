"""Evaluation: acoustic outputs of dev and test, the lm_alpha/lm_beta search, word and character error rates."""
