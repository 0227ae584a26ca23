"""VoxForge, Italian: one ``.tgz`` per recording session in VOXFORGE_DIR.

Each session unpacks to ``<session>/etc/README`` (``Key: value`` lines, ``User Name`` among them),
``etc/prompts-original`` (``<utt> text`` with punctuation), ``etc/PROMPTS`` (``<session>/mfc/<utt> TEXT``) and
``wav/<utt>.wav`` or ``flac/<utt>.flac``. Prompts are read as bytes and decoded as UTF-8, else Latin-1 (many were
written on Windows). ``anonymous`` is many people: each anonymous session is its own speaker. There is no official
split: whole speakers go to one split (data/splits.py), so one user's sessions never end up in two.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from deepspeech_it.data.clips import Row
from deepspeech_it.data.splits import assign_splits

ARCHIVES = "*.tgz"
AUDIO_FOLDERS = (("wav", ".wav"), ("flac", ".flac"))
# Sessions MITADS-Speech's authors found too quiet to use, or not in Italian.
FAULTY_SESSIONS = frozenset({"anonymous-20080504-qvg", "anonymous-20080723-ouv", "anonymous-20080725-dey",
                             "Vistaus-20080718-mrm"})
NO_PROMPTS = "session without prompts"


def decode_text(data: bytes) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("latin-1")


def session_folders(extracted: Path) -> list[Path]:
    return sorted(path for path in extracted.glob("*") if path.is_dir() and not path.name.startswith("."))


def speaker_of(session: Path) -> str:
    readme = session / "etc" / "README"
    user = ""
    if readme.is_file():
        for line in decode_text(readme.read_bytes()).splitlines():
            key, _, value = line.partition(":")
            if key.strip().lower() == "user name":
                user = value.strip()
                break
    if not user or user.lower() == "anonymous":
        return f"voxforge:{session.name}"
    return f"voxforge:{user.lower()}"


def prompts(session: Path) -> dict[str, str] | None:
    """utterance → text: prompts-original (punctuation and case kept) where present, else PROMPTS."""
    original, plain = session / "etc" / "prompts-original", session / "etc" / "PROMPTS"
    if original.is_file():
        return _prompt_lines(decode_text(original.read_bytes()), lambda token: token)
    if plain.is_file():
        return _prompt_lines(decode_text(plain.read_bytes()), lambda token: token.rsplit("/", 1)[-1])
    return None


def _prompt_lines(text: str, utterance_of) -> dict[str, str]:
    lines = {}
    for line in text.splitlines():
        token, _, sentence = line.strip().partition(" ")
        if token and sentence.strip():
            lines[utterance_of(token)] = sentence.strip()
    return lines


def _audio(session: Path, utterance: str) -> Path:
    candidates = [session / folder / f"{utterance}{extension}" for folder, extension in AUDIO_FOLDERS]
    return next((path for path in candidates if path.is_file()), candidates[0])


def read_rows(extracted: Path, skipped: Counter) -> list[Row]:
    rows = []
    for session in session_folders(extracted):
        lines = prompts(session)
        if lines is None:
            skipped[NO_PROMPTS] += 1
            continue
        speaker = speaker_of(session)
        rows += [Row(f"{session.name}-{utterance}", _audio(session, utterance), text, speaker,
                     faulty=session.name in FAULTY_SESSIONS) for utterance, text in lines.items()]
    return assign_splits(rows, group_of=lambda row: row.speaker)
