"""DeepSpeech alphabet files: reading, encoding and the binary serialisation the native clients embed."""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

from deepspeech_it.util.errors import PipelineError


class AlphabetError(PipelineError, ValueError):
    pass


@dataclass(frozen=True)
class Alphabet:
    """Labels in index order; the CTC blank is not a label, it is index ``len(labels)``."""

    labels: tuple[str, ...]

    def __post_init__(self) -> None:
        if not self.labels:
            raise AlphabetError("alphabet has no labels")
        if len(set(self.labels)) != len(self.labels):
            raise AlphabetError("alphabet has a label twice")
        if " " not in self.labels:
            raise AlphabetError("alphabet has no space label")

    @classmethod
    def from_file(cls, path: str | Path) -> "Alphabet":
        return cls.from_text(Path(path).read_bytes().decode("utf-8"))

    @classmethod
    def from_text(cls, text: str) -> "Alphabet":
        # Same rules as DeepSpeech's alphabet.cc: '#' starts a comment, '\#' is a literal '#',
        # empty lines are skipped, CRLF is tolerated.
        labels = []
        for line in text.split("\n"):
            line = line.removesuffix("\r")
            if line.startswith("#") or line == "":
                continue
            if line.startswith("\\#"):
                line = "#" + line[2:]
            labels.append(line)
        return cls(tuple(labels))

    @property
    def size(self) -> int:
        return len(self.labels)

    @property
    def blank_index(self) -> int:
        return len(self.labels)

    @property
    def space_index(self) -> int:
        return self.labels.index(" ")

    @property
    def charset(self) -> frozenset[str]:
        return frozenset(self.labels)

    def can_encode(self, text: str) -> bool:
        return bool(text) and all(ch in self._index for ch in text)

    def encode(self, text: str) -> list[int]:
        try:
            return [self._index[ch] for ch in text]
        except KeyError as missing:
            raise AlphabetError(f"{missing.args[0]!r} is not in the alphabet") from None

    def decode(self, indices) -> str:
        return "".join(self.labels[i] for i in indices)

    @property
    def _index(self) -> dict[str, int]:
        cache = self.__dict__.get("_index_cache")
        if cache is None:
            cache = {label: i for i, label in enumerate(self.labels)}
            object.__setattr__(self, "_index_cache", cache)
        return cache

    def serialize(self) -> bytes:
        """Alphabet::Serialize of the native clients: uint16 size, then (uint16 key, uint16 len, bytes) per label."""
        out = [struct.pack("<H", self.size)]
        for key, label in enumerate(self.labels):
            raw = label.encode("utf-8")
            out.append(struct.pack("<HH", key, len(raw)) + raw)
        return b"".join(out)

    @classmethod
    def deserialize(cls, data: bytes) -> "Alphabet":
        (size,) = struct.unpack_from("<H", data, 0)
        offset = 2
        by_key = {}
        for _ in range(size):
            key, length = struct.unpack_from("<HH", data, offset)
            offset += 4
            by_key[key] = data[offset:offset + length].decode("utf-8")
            offset += length
        if sorted(by_key) != list(range(size)):
            raise AlphabetError("serialised alphabet keys are not 0..size-1")
        return cls(tuple(by_key[k] for k in range(size)))

    def to_text(self) -> str:
        lines = ["# Each line is one label; the line holding a single space is the space label."]
        lines += ["\\" + label if label.startswith("#") else label for label in self.labels]
        return "\n".join(lines) + "\n"
