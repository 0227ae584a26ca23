"""CTC decoding: greedy, and the beam search with the scorer (C++ core loaded through ctypes)."""
