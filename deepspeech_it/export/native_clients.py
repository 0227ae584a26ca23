"""The real native clients, libdeepspeech.so 0.9.3 and libstt.so 1.4, driven through ctypes.

They are the proof that our models are what DeepSpeech and Coqui STT users can run: ``deepspeech-tflite==0.9.3``
and ``stt==1.4.0`` (TFLite clients), and ``deepspeech==0.9.3`` (the TensorFlow client, which runs
output_graph.pb/.pbmm). The libraries are installed by `make setup` (export/client_libraries.py); here they are only
loaded.
"""

from __future__ import annotations

import ctypes
import json
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from deepspeech_it.data.framing import SAMPLE_RATE
from deepspeech_it.export.client_libraries import (DEEPSPEECH, DEEPSPEECH_TF, INSTALLED, STT, ClientRelease,
                                                   NativeClientError, library_paths)

# The clients that load TFLite models, the release format stage 06 verifies, and the one that loads .pb/.pbmm.
RELEASES = (DEEPSPEECH, STT)
# What both clients print when the scorer's dictionary cannot be memory-mapped because it was written unaligned.
MAPPING_WARNING = "could not be honored"
# What the TensorFlow client prints when it loads a model without memory-mapping it (any path without ".pbmm").
READ_INTO_MEMORY_WARNING = "reading entire model file into memory"


class _TokenMetadata(ctypes.Structure):
    _fields_ = [("text", ctypes.c_char_p), ("timestep", ctypes.c_uint), ("start_time", ctypes.c_float)]


class _CandidateTranscript(ctypes.Structure):
    _fields_ = [("tokens", ctypes.POINTER(_TokenMetadata)), ("num_tokens", ctypes.c_uint),
                ("confidence", ctypes.c_double)]


class _Metadata(ctypes.Structure):
    _fields_ = [("transcripts", ctypes.POINTER(_CandidateTranscript)), ("num_transcripts", ctypes.c_uint)]


@dataclass(frozen=True)
class Token:
    text: str
    timestep: int
    start_time: float


@dataclass(frozen=True)
class Candidate:
    text: str
    confidence: float
    tokens: tuple[Token, ...]


class NativeLibrary:
    """One loaded client library with the part of the C API we use, under prefix-free names."""

    def __init__(self, release: ClientRelease, library_paths: list[Path]):
        self.release = release
        # libstt.so links libkenlm.so without an rpath: load it globally first. The client library itself stays
        # local, so that its TensorFlow Lite symbols cannot stand in for those of another library in the process.
        for dependency in library_paths[:-1]:
            ctypes.CDLL(str(dependency), mode=ctypes.RTLD_GLOBAL)
        self._lib = ctypes.CDLL(str(library_paths[-1]), mode=ctypes.RTLD_LOCAL)
        self._declare()

    @classmethod
    def load(cls, release: ClientRelease) -> "NativeLibrary":
        return cls(release, library_paths(release))

    def _fn(self, name: str):
        return getattr(self._lib, f"{self.release.prefix}_{name}")

    def _declare(self) -> None:
        p = ctypes.c_void_p
        signatures = {
            "CreateModel": (ctypes.c_int, [ctypes.c_char_p, ctypes.POINTER(p)]),
            "FreeModel": (None, [p]),
            "GetModelSampleRate": (ctypes.c_int, [p]),
            "GetModelBeamWidth": (ctypes.c_uint, [p]),
            "SetModelBeamWidth": (ctypes.c_int, [p, ctypes.c_uint]),
            "EnableExternalScorer": (ctypes.c_int, [p, ctypes.c_char_p]),
            "SetScorerAlphaBeta": (ctypes.c_int, [p, ctypes.c_float, ctypes.c_float]),
            # char* results are kept as raw pointers so that they can be handed back to FreeString.
            "SpeechToText": (p, [p, ctypes.POINTER(ctypes.c_short), ctypes.c_uint]),
            "SpeechToTextWithMetadata": (ctypes.POINTER(_Metadata),
                                         [p, ctypes.POINTER(ctypes.c_short), ctypes.c_uint, ctypes.c_uint]),
            "FreeMetadata": (None, [ctypes.POINTER(_Metadata)]),
            "FreeString": (None, [p]),
            "Version": (p, []),
            "ErrorCodeToErrorMessage": (p, [ctypes.c_int]),
        }
        for name, (restype, argtypes) in signatures.items():
            fn = self._fn(name)
            fn.restype = restype
            fn.argtypes = argtypes

    def _take_string(self, pointer) -> str | None:
        if not pointer:
            return None
        try:
            return ctypes.string_at(pointer).decode("utf-8")
        finally:
            self._fn("FreeString")(pointer)

    def version(self) -> str:
        return self._take_string(self._fn("Version")())

    def error_message(self, code: int) -> str:
        return self._take_string(self._fn("ErrorCodeToErrorMessage")(code))

    def create_model(self, model_path: str | Path) -> "NativeModel":
        """Loads a TFLite model; raises NativeClientError with the client's own message if it refuses."""
        handle = ctypes.c_void_p()
        code = self._fn("CreateModel")(str(model_path).encode(), ctypes.byref(handle))
        self.check("CreateModel", code)
        return NativeModel(self, handle)

    def check(self, name: str, code: int) -> None:
        """Raises NativeClientError with the client's own message when {prefix}_NAME returned CODE != 0."""
        if code != 0:
            raise NativeClientError(f"{self.release.prefix}_{name} returned {code:#06x}: {self.error_message(code)}")


class NativeModel:
    def __init__(self, library: NativeLibrary, handle: ctypes.c_void_p):
        self.library = library
        self._handle = handle

    def _call(self, name: str, *args):
        if self._handle is None:
            raise NativeClientError("the model has been freed")
        return self.library._fn(name)(self._handle, *args)

    @property
    def sample_rate(self) -> int:
        return self._call("GetModelSampleRate")

    @property
    def beam_width(self) -> int:
        return self._call("GetModelBeamWidth")

    def set_beam_width(self, width: int) -> None:
        self.library.check("SetModelBeamWidth", self._call("SetModelBeamWidth", width))

    def enable_scorer(self, scorer_path: str | Path) -> None:
        self.library.check("EnableExternalScorer", self._call("EnableExternalScorer", str(scorer_path).encode()))

    def set_scorer_alpha_beta(self, alpha: float, beta: float) -> None:
        self.library.check("SetScorerAlphaBeta", self._call("SetScorerAlphaBeta", alpha, beta))

    def speech_to_text(self, samples: np.ndarray) -> str:
        buffer, count = _int16_buffer(samples)
        text = self.library._take_string(self._call("SpeechToText", buffer, count))
        if text is None:
            raise NativeClientError(f"{self.library.release.prefix}_SpeechToText failed")
        return text

    def speech_to_text_with_metadata(self, samples: np.ndarray, num_results: int = 1) -> list[Candidate]:
        buffer, count = _int16_buffer(samples)
        metadata = self._call("SpeechToTextWithMetadata", buffer, count, num_results)
        if not metadata:
            raise NativeClientError(f"{self.library.release.prefix}_SpeechToTextWithMetadata failed")
        try:
            candidates = []
            for i in range(metadata.contents.num_transcripts):
                transcript = metadata.contents.transcripts[i]
                tokens = tuple(Token(t.text.decode("utf-8"), t.timestep, t.start_time)
                               for t in transcript.tokens[:transcript.num_tokens])
                candidates.append(Candidate("".join(t.text for t in tokens), transcript.confidence, tokens))
            return candidates
        finally:
            self.library._fn("FreeMetadata")(metadata)

    def free(self) -> None:
        if self._handle is not None:
            self.library._fn("FreeModel")(self._handle)
            self._handle = None

    def __enter__(self) -> "NativeModel":
        return self

    def __exit__(self, *exc) -> None:
        self.free()


def _int16_buffer(samples: np.ndarray):
    samples = np.ascontiguousarray(samples, dtype=np.int16)
    return samples.ctypes.data_as(ctypes.POINTER(ctypes.c_short)), samples.size


# --------------------------------------------------------------------------------------------------------------
# Running a client in a child process
#
# Each client embeds its own runtime (TensorFlow Lite r2.3 or TensorFlow r2.3 in the two libdeepspeech.so, TFLite
# 2.9 in libstt.so) and aborts on some malformed models, so it runs in a process of its own: a crash is a reported
# failure, and the runtimes never share a process with each other or with TensorFlow.


@dataclass(frozen=True)
class ClientRun:
    release: str
    version: str
    sample_rate: int
    beam_width: int
    results: list[dict]        # per file: file, text, seconds (time in SpeechToText), audio_seconds; with
                               # metadata also confidence and timesteps (the frame of each character)
    stderr: str                # what the library printed (TensorFlow/DeepSpeech banners, scorer warnings)
    load_seconds: float        # time in {prefix}_CreateModel
    memory_kb: dict            # "before_load"/"after_load": VmRSS, RssAnon, RssFile, VmHWM of the client's process


def run_client(release: ClientRelease, model_path: str | Path, files=(), *, scorer_path=None, beam_width=None,
               alpha=None, beta=None, metadata: bool = False, timeout: float = 600) -> ClientRun:
    """Loads MODEL_PATH (and the scorer) in the real client in a child process and transcribes FILES with
    {prefix}_SpeechToText, or {prefix}_SpeechToTextWithMetadata when METADATA. Raises NativeClientError with the
    client's message when it refuses the model or scorer, ClientUnavailable when setup has not installed it."""
    library_paths(release)
    command = [sys.executable, "-m", "deepspeech_it.export.native_clients", release.name, str(model_path)]
    if scorer_path is not None:
        command += ["--scorer", str(scorer_path)]
    if beam_width is not None:
        command += ["--beam-width", str(beam_width)]
    if alpha is not None and beta is not None:
        command += ["--alpha", repr(float(alpha)), "--beta", repr(float(beta))]
    if metadata:
        command += ["--metadata"]
    command += [str(f) for f in files]
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        reason = lines[-1] if lines else f"exit status {done.returncode}"
        raise NativeClientError(f"{release.name}: {reason}; stderr: {done.stderr.strip()[-800:]}")
    report = json.loads(lines[-1])
    return ClientRun(release.name, report["version"], report["sample_rate"], report["beam_width"],
                     report["results"], done.stderr, report["load_seconds"], report["memory_kb"])


MEMORY_FIELDS = ("VmRSS", "RssAnon", "RssFile", "VmHWM")


def _memory_kb() -> dict[str, int]:
    """This process's resident memory (kB) by kind: memory-mapped weights count as RssFile, copies as RssAnon."""
    fields = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines() if ":" in line)
    return {name: int(fields[name].split()[0]) for name in MEMORY_FIELDS if name in fields}


def _child_main(argv: list[str]) -> int:
    import argparse

    from deepspeech_it.data.audio import load_training_samples

    parser = argparse.ArgumentParser(prog="python -m deepspeech_it.export.native_clients")
    parser.add_argument("client", choices=[r.name for r in INSTALLED])
    parser.add_argument("model")
    parser.add_argument("files", nargs="*")
    parser.add_argument("--scorer")
    parser.add_argument("--beam-width", type=int)
    parser.add_argument("--alpha", type=float)
    parser.add_argument("--beta", type=float)
    parser.add_argument("--metadata", action="store_true")
    args = parser.parse_intermixed_args(argv)
    release = next(r for r in INSTALLED if r.name == args.client)
    try:
        library = NativeLibrary.load(release)
        memory = {"before_load": _memory_kb()}
        started = time.perf_counter()
        with library.create_model(args.model) as model:
            load_seconds = time.perf_counter() - started
            memory["after_load"] = _memory_kb()
            if args.beam_width is not None:
                model.set_beam_width(args.beam_width)
            if args.scorer:
                model.enable_scorer(args.scorer)
                if args.alpha is not None:
                    model.set_scorer_alpha_beta(args.alpha, args.beta)
            results = []
            for name in args.files:
                samples = load_training_samples(name)
                started = time.perf_counter()
                if args.metadata:
                    best = model.speech_to_text_with_metadata(samples)[0]
                    result = {"text": best.text, "confidence": best.confidence,
                              "timesteps": [token.timestep for token in best.tokens]}
                else:
                    result = {"text": model.speech_to_text(samples)}
                results.append({"file": name, **result, "seconds": time.perf_counter() - started,
                                "audio_seconds": samples.size / SAMPLE_RATE})
            print(json.dumps({"version": library.version(), "sample_rate": model.sample_rate,
                              "beam_width": model.beam_width, "results": results, "load_seconds": load_seconds,
                              "memory_kb": memory}, ensure_ascii=False))
    except NativeClientError as problem:
        print(str(problem))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(_child_main(sys.argv[1:]))


def verify_model(model_path: str | Path, scorer_path: str | Path | None = None, *,
                 expected_beam_width: int) -> dict[str, str]:
    """Loads the model (and scorer) in both clients; returns one line of evidence per client.

    Raises NativeClientError when a client refuses the model or the scorer, reports another sample rate or beam
    width, or warns that the scorer's dictionary could not be memory-mapped.
    """
    evidence = {}
    for release in RELEASES:
        run = run_client(release, model_path, scorer_path=scorer_path)
        evidence[client_label(release)] = _checked(run, release, expected_beam_width, scorer_path, [])
    return evidence


def verify_tensorflow_graph(graph_path: str | Path, scorer_path: str | Path | None = None, *,
                            expected_beam_width: int) -> dict[str, str]:
    """Loads output_graph.pb or .pbmm (and the scorer) in the TensorFlow client; returns its line of evidence.

    The client memory-maps exactly the paths that contain ".pbmm" and warns about the others; a .pbmm path that
    still gets the warning was not mapped. Raises NativeClientError as verify_model does, and for that.
    """
    release = DEEPSPEECH_TF
    run = run_client(release, graph_path, scorer_path=scorer_path)
    mapped = READ_INTO_MEMORY_WARNING not in run.stderr
    problems = [f"{Path(graph_path).name} was not memory-mapped"] if ".pbmm" in str(graph_path) and not mapped else []
    line = _checked(run, release, expected_beam_width, scorer_path, problems)
    return {client_label(release): line + (", memory-mapped" if mapped else ", read into memory")}


def client_label(release: ClientRelease) -> str:
    """How metadata.json and the model card name a client: its PyPI package and version."""
    return f"{release.package} {release.version}"


def _checked(run: ClientRun, release: ClientRelease, expected_beam_width: int, scorer_path, problems: list[str]) -> str:
    if run.sample_rate != SAMPLE_RATE:
        problems.append(f"sample rate {run.sample_rate}")
    if run.beam_width != expected_beam_width:
        problems.append(f"beam width {run.beam_width} instead of {expected_beam_width}")
    if MAPPING_WARNING in run.stderr:
        problems.append("scorer dictionary not memory-mappable: " + run.stderr.strip().splitlines()[-1])
    if problems:
        raise NativeClientError(f"{client_label(release)}: " + "; ".join(problems))
    return (f"{release.prefix}_CreateModel 0, {run.sample_rate} Hz, beam width {run.beam_width}"
            + (", scorer accepted" if scorer_path else ""))
