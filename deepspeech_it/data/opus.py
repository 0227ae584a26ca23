"""Opus encoding and decoding of 16-bit PCM in memory, through libopus (the library libsndfile itself links).

The codec augmentation needs bitrates down to DeepSpeech's default 3200 bit/s; libsndfile's Ogg/Opus writer stops
near 6000, so the encoder is driven directly: 60 ms frames, the "audio" application, as DeepSpeech 0.9.3 did.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import threading

import numpy as np

from deepspeech_it.util.errors import PipelineError

APPLICATION_AUDIO = 2049          # OPUS_APPLICATION_AUDIO
SET_BITRATE = 4002                # OPUS_SET_BITRATE_REQUEST
GET_LOOKAHEAD = 4027              # OPUS_GET_LOOKAHEAD_REQUEST
FRAME_MS = 60
MAX_PACKET = 4000                 # bytes; libopus' recommended output buffer
_library = None
_lock = threading.Lock()


class OpusError(PipelineError, RuntimeError):
    pass


def _lib():
    global _library
    with _lock:
        if _library is None:
            name = ctypes.util.find_library("opus") or "libopus.so.0"
            try:
                lib = ctypes.CDLL(name)
            except OSError:
                raise OpusError("libopus is not installed (Debian: libopus0)") from None
            lib.opus_encoder_create.restype = ctypes.c_void_p
            lib.opus_encoder_create.argtypes = [ctypes.c_int32, ctypes.c_int, ctypes.c_int,
                                                ctypes.POINTER(ctypes.c_int)]
            lib.opus_decoder_create.restype = ctypes.c_void_p
            lib.opus_decoder_create.argtypes = [ctypes.c_int32, ctypes.c_int, ctypes.POINTER(ctypes.c_int)]
            lib.opus_encode.restype = ctypes.c_int32
            lib.opus_encode.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int, ctypes.c_void_p,
                                        ctypes.c_int32]
            lib.opus_decode.restype = ctypes.c_int
            lib.opus_decode.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int32, ctypes.c_void_p,
                                        ctypes.c_int, ctypes.c_int]
            lib.opus_encoder_destroy.argtypes = [ctypes.c_void_p]
            lib.opus_decoder_destroy.argtypes = [ctypes.c_void_p]
            _library = lib
    return _library


def _check(code: int, what: str) -> int:
    if code < 0:
        raise OpusError(f"libopus {what} failed (error {code})")
    return code


def opus_round_trip(samples: np.ndarray, rate: int, bitrate: int) -> np.ndarray:
    """int16 mono samples -> Opus at BITRATE bit/s -> int16 samples of the same length and alignment."""
    lib = _lib()
    error = ctypes.c_int(0)
    encoder = lib.opus_encoder_create(rate, 1, APPLICATION_AUDIO, ctypes.byref(error))
    _check(error.value, "encoder creation")
    decoder = lib.opus_decoder_create(rate, 1, ctypes.byref(error))
    try:
        _check(error.value, "decoder creation")
        _check(lib.opus_encoder_ctl(ctypes.c_void_p(encoder), SET_BITRATE, ctypes.c_int32(int(bitrate))), "bitrate setting")
        lookahead = ctypes.c_int32(0)
        _check(lib.opus_encoder_ctl(ctypes.c_void_p(encoder), GET_LOOKAHEAD, ctypes.byref(lookahead)), "lookahead query")
        frame = FRAME_MS * rate // 1000
        # The encoder delays its output by the lookahead: encode that much silence more, then drop it in front.
        total = len(samples) + lookahead.value
        padded = np.zeros(-(-total // frame) * frame, np.int16)
        padded[:len(samples)] = samples
        decoded = np.zeros_like(padded)
        packet = ctypes.create_string_buffer(MAX_PACKET)
        for start in range(0, len(padded), frame):
            chunk = padded[start:start + frame]
            size = _check(lib.opus_encode(encoder, chunk.ctypes.data, frame, packet, MAX_PACKET), "encoding")
            out = decoded[start:start + frame]
            _check(lib.opus_decode(decoder, packet, size, out.ctypes.data, frame, 0), "decoding")
        return decoded[lookahead.value:lookahead.value + len(samples)].copy()
    finally:
        lib.opus_encoder_destroy(encoder)
        if decoder:
            lib.opus_decoder_destroy(decoder)
