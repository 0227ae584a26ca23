"""Speech data: the alphabet, audio conversion, Italian text normalisation, corpora importers and the DeepSpeech CSV."""
