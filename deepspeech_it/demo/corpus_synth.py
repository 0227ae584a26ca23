"""Small archives shaped like the published M-AILABS, MLS, VoxPopuli and VoxForge Italian corpora, spoken by
espeak-ng, each carrying the pitfalls its importer must survive; :class:`CorpusManifest` says what the importer
should make of them. Common Voice's counterpart is demo/synth.py, whose sentences these builders share.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import multiprocessing
import subprocess
import tarfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile
import soxr

from deepspeech_it.data.framing import SAMPLE_RATE
from deepspeech_it.demo.synth import project_sentences

VOICES = ("it", "it+m3", "it+f2", "it+m1", "it+f4")
# Texts as the corpora write them, with what our normaliser must make of them.
RAW_DIGITS = ("Nel 1904, dell’altra parte c’erano 3 case.",
              "nel millenovecentoquattro dell'altra parte c'erano tre case")
RAW_PARLIAMENT = ("Il 3 maggio l’Assemblea ha votato 27 emendamenti.",
                  "il tre maggio l'assemblea ha votato ventisette emendamenti")
LATIN1_PROMPT = ("La città è bella, perché è antica.", "la città è bella perché è antica")


@dataclass
class CorpusManifest:
    """What the importer should find: the wavs it keeps (name → split, "" where our splitter chooses), the
    transcripts it must write for the pitfalls, rejections by reason (all splits together), skips before any split,
    and the group (speaker or book) and recording key of each kept clip."""

    kept: dict[str, str] = field(default_factory=dict)
    transcripts: dict[str, str] = field(default_factory=dict)
    rejected: Counter = field(default_factory=Counter)
    skipped: Counter = field(default_factory=Counter)
    groups: dict[str, str] = field(default_factory=dict)
    recordings: dict[str, str] = field(default_factory=dict)

    def keep(self, name: str, split: str = "", group: str = "", recording: str = "", transcript: str = "") -> None:
        self.kept[name] = split
        self.groups[name] = group
        if recording:
            self.recordings[name] = recording
        if transcript:
            self.transcripts[name] = transcript


class Sentences:
    """The project's sentences handed out once each, so that no two clips of a corpus share one by accident."""

    def __init__(self, offset: int = 0):
        self._all, self._next = project_sentences(), offset

    def take(self) -> str:
        sentence = self._all[self._next % len(self._all)]
        self._next += 1
        return sentence


def _espeak(job: tuple[str, str]) -> np.ndarray:
    text, voice = job
    wav = subprocess.run(["espeak-ng", "-v", voice, "-s", "170", "--stdout", text], check=True,
                         capture_output=True).stdout
    samples, rate = soundfile.read(io.BytesIO(wav), dtype="float32")
    return soxr.resample(samples, rate, SAMPLE_RATE)


def speak_all(jobs: list[tuple[str, str]], processes: int = 2) -> list[np.ndarray]:
    """(text, voice) pairs spoken at 16 kHz, in order."""
    with multiprocessing.get_context("fork").Pool(processes) as pool:
        return pool.map(_espeak, jobs)


def encode(samples: np.ndarray, fmt: str, rate: int = SAMPLE_RATE) -> bytes:
    """SAMPLES (at SAMPLE_RATE) as a FLAC, Opus, Ogg Vorbis or WAV file at RATE."""
    if rate != SAMPLE_RATE:
        samples = soxr.resample(samples, SAMPLE_RATE, rate)
    container, subtype = {"wav": ("WAV", "PCM_16"), "flac": ("FLAC", "PCM_16"), "opus": ("OGG", "OPUS"),
                          "vorbis": ("OGG", "VORBIS")}[fmt]
    buffer = io.BytesIO()
    soundfile.write(buffer, samples, rate, format=container, subtype=subtype)
    return buffer.getvalue()


class Tar:
    """A tar archive written from bytes, members in the order added."""

    def __init__(self, path: Path, mode: str = "w:gz"):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.tar = tarfile.open(path, mode)

    def add(self, name: str, data: bytes | str) -> None:
        data = data.encode("utf-8") if isinstance(data, str) else data
        info = tarfile.TarInfo(name)
        info.size, info.mode = len(data), 0o644
        self.tar.addfile(info, io.BytesIO(data))

    def close(self) -> None:
        self.tar.close()


# ---- M-AILABS ------------------------------------------------------------------------------------------------

MAILABS_BOOKS = (("female/lisa_caputo", "malavoglia", "verga"), ("male/riccardo_fasol", "il_fu_mattia_pascal", "pirandello"),
                 ("male/riccardo_fasol", "galatea", "barrili"), ("mix", "novelle_per_un_anno_00", "pirandello"),
                 ("mix", "novelle_per_un_anno_06", "pirandello"))


def build_mailabs(target: Path, clips_per_book: int = 3, processes: int = 2) -> CorpusManifest:
    """it_IT.tgz: five books (two readers and the reader-less ``mix``), 0.5 s of silence around every clip; a
    listed wav missing, an empty wav, a clip of the known-faulty list, digits and ’ in the original text (column 3
    lost the apostrophes, as in the real corpus), and macOS junk files."""
    manifest, sentences, lines = CorpusManifest(), Sentences(), {}
    jobs, names = [], []
    for folder, book, author in MAILABS_BOOKS:
        base = f"it_IT/by_book/{folder}/{book}" if folder != "mix" else f"it_IT/by_book/mix/{book}"
        lines[base] = []
        for index in range(clips_per_book):
            clip = f"{book.replace('_', '')}_{index + 1:02d}_{author}_f{index:06d}"
            text = RAW_DIGITS[0] if (book, index) == ("galatea", 0) else sentences.take()
            lines[base].append((clip, text, text.lower().replace("’", "")))
            jobs.append((text, VOICES[len(jobs) % len(VOICES)]))
            names.append((base, clip))
            manifest.keep(f"{clip}.wav", group=f"{folder}/{book}", recording=book,
                          transcript=RAW_DIGITS[1] if (book, index) == ("galatea", 0) else "")
    # Pitfalls: a row whose wav is missing, an empty wav, a clip the faulty list names.
    mix = "it_IT/by_book/mix/novelle_per_un_anno_06"
    lines[mix] += [("novelle06_16_pirandello_f000030", sentences.take(), "x"),
                   ("novelle06_02_pirandello_f000404", sentences.take(), "x"),
                   ("novelle06_02_pirandello_f000405", sentences.take(), "x")]
    manifest.rejected.update({"known faulty clip": 1, "missing clip": 1, "undecodable or empty audio": 1})
    audio = speak_all(jobs + [(lines[mix][-3][1], "it")], processes)
    silence = np.zeros(8000, dtype=np.float32)
    tar = Tar(target)
    for (base, clip), samples in zip(names + [(mix, "novelle06_16_pirandello_f000030")], audio):
        tar.add(f"{base}/wavs/{clip}.wav", encode(np.concatenate([silence, samples, silence]), "wav"))
    tar.add(f"{mix}/wavs/novelle06_02_pirandello_f000405.wav", b"")
    for base, rows in lines.items():
        tar.add(f"{base}/metadata.csv", "".join(f"{clip}|{text}|{clean}\n" for clip, text, clean in rows))
        tar.add(f"{base}/metadata_mls.json", json.dumps({f"{c}.wav": {"original": t, "clean": n} for c, t, n in rows}))
        tar.add(f"{base}/._metadata.csv", b"\x00\x05\x16\x07 Mac OS X resource fork")
        tar.add(f"{base}/.DS_Store", b"\x00\x00\x00\x01Bud1")
    for reader in ("female/lisa_caputo", "male/riccardo_fasol", "mix"):
        tar.add(f"it_IT/by_book/{reader}/info.txt", "Title: Italian LibriVox books\n")
    tar.close()
    return manifest


# ---- MLS -----------------------------------------------------------------------------------------------------

# split, speaker, book id, title, clips. "I Malavoglia" is in train and test (two readers), and M-AILABS has it too.
MLS_BOOKS = (("train", "1595", "4194", "Il fu Mattia Pascal", 3), ("train", "6001", "100", "Le avventure di Pinocchio", 3),
             ("train", "1595", "5616", "I Malavoglia", 2), ("dev", "7002", "200", "Cuore", 3),
             ("test", "8003", "300", "Galatea", 2), ("test", "8004", "5617", "I Malavoglia", 2))


def build_mls(target: Path, codec: str = "opus", processes: int = 2) -> CorpusManifest:
    """mls_italian_opus.tar.gz (Opus at 48 kHz) or mls_italian.tar.gz (FLAC at 16 kHz); lower-case transcripts
    without punctuation; the known-faulty clip, a listed clip without audio, an empty file, and a transcript with
    the page-scan leftover."""
    root = "mls_italian_opus" if codec == "opus" else "mls_italian"
    extension, rate = (".opus", 48000) if codec == "opus" else (".flac", SAMPLE_RATE)
    manifest, sentences = CorpusManifest(), Sentences(20)
    transcripts = {split: [] for split in ("train", "dev", "test")}
    jobs, files = [], []
    for split, speaker, book, title, count in MLS_BOOKS:
        for index in range(count):
            clip = f"{speaker}_{book}_{index:06d}"
            text = sentences.take()
            spoken = text
            if (split, index, book) == ("train", 0, "100"):
                text = f"{text} content from google book search generated at"
            transcripts[split].append(f"{clip}\t{text}")
            jobs.append((spoken, VOICES[len(jobs) % len(VOICES)]))
            files.append(f"{root}/{split}/audio/{speaker}/{book}/{clip}{extension}")
            manifest.keep(f"{clip}.wav", split, f"mls:{speaker}", title, spoken if text != spoken else "")
    transcripts["train"] += ["1595_5616_000923\tuna trascrizione sbagliata", f"1595_4194_000777\t{sentences.take()}",
                             f"1595_4194_000778\t{sentences.take()}"]
    manifest.rejected.update({"known faulty clip": 1, "missing clip": 1, "undecodable or empty audio": 1})
    tar = Tar(target)
    for name, samples in zip(files, speak_all(jobs, processes)):
        tar.add(name, encode(samples, codec, rate))
    tar.add(f"{root}/train/audio/1595/5616/1595_5616_000923{extension}", encode(speak_all([("sbagliata", "it")])[0], codec, rate))
    tar.add(f"{root}/train/audio/1595/4194/1595_4194_000778{extension}", b"")
    for split, lines in transcripts.items():
        tar.add(f"{root}/{split}/transcripts.txt", "\n".join(lines) + "\n")
        tar.add(f"{root}/{split}/segments.txt", "".join(
            f"{line.split(chr(9))[0]}\thttp://www.archive.org/download/book/chapter_64kb.mp3\t1.0\t4.0\n" for line in lines))
    tar.add(f"{root}/train/limited_supervision/1hr/0/handles.txt", "1595_4194_000000\n")
    header = " SPEAKER   |   GENDER   | PARTITION  |  MINUTES   |  BOOK ID   |             TITLE              |  CHAPTER  "
    tar.add(f"{root}/metainfo.txt", header + "\n" + "".join(
        f" {speaker:<9} |   F    | {split:<10} |  10.0  | {book:<10} | {title:<30} | capitolo 1\n"
        for split, speaker, book, title, _ in MLS_BOOKS))
    tar.add(f"{root}/README", "Multilingual LibriSpeech, Italian\n")
    tar.add(f"{root}/LICENSE", "CC BY 4.0\n")
    tar.close()
    return manifest


# ---- VoxPopuli -----------------------------------------------------------------------------------------------

VOXPOPULI_COLUMNS = ("id_", "session_id", "split", "vad", "start_time", "end_time", "original_text", "normed_text",
                     "speaker_id", "gender", "is_gold_transcript", "accent")
PROCESSED_COLUMNS = ("id", "raw_text", "normalized_text", "speaker_id", "split", "gender", "is_gold_transcript", "accent")
# session, split of each of its segments (None: a row outside the official splits)
VOXPOPULI_SESSIONS = (("20190115-0900-PLENARY-7", ("train", "train", "train", None)),
                      ("20200210-0900-PLENARY-3", ("train", "dev", "dev", "test", "test")))


def build_voxpopuli(folder: Path, layout: str = "raw", processes: int = 2) -> CorpusManifest:
    """VoxPopuli as published (``original_<year>.tar`` session recordings, Ogg Vorbis, plus ``asr_it.tsv.gz``) or as
    ``get_asr_data`` leaves it (``transcribed_data/it/``). Ids hold ':'; a segment of two VAD pieces; a speaker
    "None"; an empty normed_text; digits and ’ in the original text; a row outside the splits; a session (raw) or
    a segment (processed) whose audio is missing, and (processed) an empty segment file."""
    manifest, sentences = CorpusManifest(), Sentences(40)
    texts, rows = [], []
    for session, splits in VOXPOPULI_SESSIONS:
        for index, split in enumerate(splits):
            text = RAW_PARLIAMENT[0] if (session[:4], index) == ("2019", 1) else sentences.take()
            texts.append((text, VOICES[len(texts) % len(VOICES)]))
            rows.append((session, f"{session[:8]}-09:0{index}:43_{index + 1}", split, text))
    audio = speak_all(texts, processes)
    if layout == "raw":
        _voxpopuli_raw(folder, rows, audio, manifest)
    else:
        _voxpopuli_processed(folder / "transcribed_data" / "it", rows, audio, manifest)
    return manifest


def _voxpopuli_raw(folder: Path, rows, audio, manifest: CorpusManifest) -> None:
    gap = np.zeros(8000, dtype=np.float32)
    sessions: dict[str, list[np.ndarray]] = {}
    table = []
    for (session, id_, split, text), samples in zip(rows, audio):
        parts = sessions.setdefault(session, [gap])
        start = sum(len(p) for p in parts) / SAMPLE_RATE
        middle = len(samples) // 2
        two_pieces = id_.endswith("_3")
        parts += [samples[:middle], gap, samples[middle:], gap] if two_pieces else [samples, gap]
        end = start + len(samples) / SAMPLE_RATE + (0.5 if two_pieces else 0)
        vad = [[start, start + middle / SAMPLE_RATE], [start + middle / SAMPLE_RATE + 0.5, end]] if two_pieces else [[start, end]]
        speaker = "None" if id_.endswith("_2") else f"{9000 + len(table) % 3}"
        normed = "" if id_.endswith("_4") else text.lower()
        table.append({"id_": id_, "session_id": session, "split": split or "other", "vad": json.dumps(vad),
                      "start_time": f"{start:.2f}", "end_time": f"{end:.2f}", "original_text": text,
                      "normed_text": normed, "speaker_id": speaker, "gender": "female",
                      "is_gold_transcript": "True", "accent": "None"})
        if split is None:
            manifest.skipped["row outside train/dev/test"] += 1
        else:
            manifest.keep(f"{session}-{id_}.wav".replace(":", "_"), split, f"voxpopuli:{speaker}",
                          transcript=RAW_PARLIAMENT[1] if text == RAW_PARLIAMENT[0] else "")
    # A row of a session no archive holds.
    table.append({**table[0], "id_": "20190301-10:00:00_1", "session_id": "20190301-0900-PLENARY-2"})
    manifest.rejected["missing clip"] += 1
    folder.mkdir(parents=True, exist_ok=True)
    with gzip.open(folder / "asr_it.tsv.gz", "wt", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, VOXPOPULI_COLUMNS, delimiter="|")
        writer.writeheader()
        writer.writerows(table)
    for year in ("2019", "2020"):
        tar = Tar(folder / f"original_{year}.tar", "w")
        for session, parts in sessions.items():
            if session.startswith(year):
                tar.add(f"original/{year}/{session}_original.ogg", encode(np.concatenate(parts), "vorbis"))
        # Another language's session: in the archive, never extracted.
        tar.add(f"original/{year}/{year}0101-0900-PLENARY-1_original.ogg", encode(gap, "vorbis"))
        tar.close()


def _voxpopuli_processed(root: Path, rows, audio, manifest: CorpusManifest) -> None:
    tables = {"train": [], "dev": [], "test": []}
    for number, ((session, id_, split, text), samples) in enumerate(zip(rows, audio)):
        if split is None:
            continue
        clip = f"{session}-{id_}"
        (root / clip[:4]).mkdir(parents=True, exist_ok=True)
        if number == 0:
            manifest.rejected["missing clip"] += 1
        elif number == 2:
            (root / clip[:4] / f"{clip}.ogg").write_bytes(b"")
            manifest.rejected["undecodable or empty audio"] += 1
        else:
            (root / clip[:4] / f"{clip}.ogg").write_bytes(encode(samples, "vorbis"))
            speaker = "None" if id_.endswith("_2") else "9001"
            manifest.keep(f"{clip}.wav".replace(":", "_"), split, f"voxpopuli:{speaker}",
                          transcript=RAW_PARLIAMENT[1] if text == RAW_PARLIAMENT[0] else "")
        tables[split].append((clip, text, "" if number == 3 else text.lower(),
                              "None" if id_.endswith("_2") else "9001", split, "female", "False", "None"))
    for split, table in tables.items():
        (root / f"asr_{split}.tsv").write_text("\t".join(PROCESSED_COLUMNS) + "\n"
                                               + "".join("\t".join(row) + "\n" for row in table), encoding="utf-8")


# ---- VoxForge ------------------------------------------------------------------------------------------------

# session, README user (None: no README), prompt encoding, audio folder, utterances; two sessions share a user.
VOXFORGE_SESSIONS = (("mario-20100101-abc", "mario", "utf-8", "wav", 3), ("mario-20100202-def", "mario", "utf-8", "wav", 2),
                     ("anonymous-20100303-ghi", "anonymous", "latin-1", "flac", 2),
                     ("anonymous-20100404-jkl", "anonymous", "utf-8", "wav", 2), ("luisa-20100505-mno", None, "utf-8", "wav", 2),
                     ("Vistaus-20080718-mrm", "Vistaus", "utf-8", "wav", 1))


def build_voxforge(folder: Path, processes: int = 2) -> CorpusManifest:
    """One .tgz per session: prompts-original or only PROMPTS, a Latin-1 PROMPTS, FLAC instead of WAV, a missing
    README, the same utterance name under two users, a zero-size wav, a session without wav/ folder, one without
    prompts, a damaged archive and a session of the known-faulty list."""
    manifest, sentences = CorpusManifest(), Sentences(60)
    folder.mkdir(parents=True, exist_ok=True)
    sessions = []
    for session, user, encoding, audio_folder, count in VOXFORGE_SESSIONS:
        utterances = []
        for index in range(count):
            text = LATIN1_PROMPT[0] if encoding == "latin-1" and index == 0 else sentences.take()
            utterances.append((f"it-{index + 1:04d}", text))
        sessions.append((session, user, encoding, audio_folder, utterances))
    audio = iter(speak_all([(text, VOICES[i % len(VOICES)]) for i, (_, text) in
                            enumerate(u for s in sessions for u in s[4])], processes))
    for session, user, encoding, audio_folder, utterances in sessions:
        tar = Tar(folder / f"{session}.tgz")
        speaker = f"voxforge:{user.lower()}" if user and user != "anonymous" else f"voxforge:{session}"
        if user:
            tar.add(f"{session}/etc/README", f"User Name:{user}\nGender: Male\nLanguage: IT\n".encode(encoding))
        tar.add(f"{session}/etc/PROMPTS", "".join(f"{session}/mfc/{u} {t.upper()}\n" for u, t in utterances).encode(encoding))
        if encoding == "utf-8":
            tar.add(f"{session}/etc/prompts-original", "".join(f"{u} {t}\n" for u, t in utterances))
        for number, (utterance, text) in enumerate(utterances):
            samples = next(audio)
            name = f"{session}-{utterance}.wav"
            if session == "anonymous-20100404-jkl" and number == 1:
                tar.add(f"{session}/wav/{utterance}.wav", b"")
                manifest.rejected["undecodable or empty audio"] += 1
                continue
            tar.add(f"{session}/{audio_folder}/{utterance}.{audio_folder}", encode(samples, audio_folder))
            if session.startswith("Vistaus"):
                manifest.rejected["known faulty clip"] += 1
                continue
            manifest.keep(name, group=speaker, transcript=LATIN1_PROMPT[1] if text == LATIN1_PROMPT[0] else "")
        tar.close()
    tar = Tar(folder / "giorgio-20100606-pqr.tgz")
    tar.add("giorgio-20100606-pqr/etc/README", "User Name:giorgio\n")
    tar.add("giorgio-20100606-pqr/etc/prompts-original", f"it-0001 {sentences.take()}\nit-0002 {sentences.take()}\n")
    tar.close()
    manifest.rejected["missing clip"] += 2
    tar = Tar(folder / "paolo-20100707-stu.tgz")
    tar.add("paolo-20100707-stu/etc/README", "User Name:paolo\n")
    tar.add("paolo-20100707-stu/wav/it-0001.wav", encode(np.zeros(SAMPLE_RATE, dtype=np.float32), "wav"))
    tar.close()
    manifest.skipped["session without prompts"] += 1
    (folder / "broken-20100808-vwx.tgz").write_bytes(b"\x1f\x8b\x08\x00 not really gzip" * 20)
    manifest.skipped["archive that cannot be unpacked"] += 1
    return manifest
