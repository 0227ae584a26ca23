"""The audio format and framing DeepSpeech 0.9.3 fixes, in one place: every module that needs them imports them here.

Clips are 16 kHz mono 16-bit PCM; features are computed over 32 ms windows every 20 ms, and the acoustic model emits
one output frame per feature step.
"""

SAMPLE_RATE = 16000
WAV_HEADER_BYTES = 44                       # the canonical PCM header the importer and wav_bytes write
BYTES_PER_SECOND = 2 * SAMPLE_RATE          # 16-bit mono
# decode_wav (what DeepSpeech's training feeds) and the native client both scale int16 by 1 / 2**15.
PCM_SCALE = 1.0 / 32768.0
WINDOW_SAMPLES = 512                        # 32 ms
STEP_SAMPLES = 320                          # 20 ms
FRAME_SECONDS = STEP_SAMPLES / SAMPLE_RATE  # one output frame per feature step
