"""Small helpers every layer uses: atomic writes, progress bars, plots, the TensorFlow runtime."""
