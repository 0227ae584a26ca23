"""The scorer package of DeepSpeech 0.9.3 / Coqui STT 1.x, written and read in pure Python.

A ``kenlm.scorer`` file is, byte for byte, what DeepSpeech's ``generate_scorer_package`` writes:

1. the KenLM binary model, copied verbatim (built with ``build_binary -v``, so it ends where KenLM's search
   structure ends and the native client looks for the trailer there);
2. the trailer header: int32 ``'TRIE'`` (bytes ``EIRT``), int32 version 6, one byte "UTF-8 mode", float64 alpha and
   float64 beta;
3. the vocabulary dictionary: an OpenFST 1.6.7 ``ConstFst<StdArc>`` written aligned (file version 1), i.e.
   FstHeader, zero padding to a 16-byte file offset, the states (20 bytes each), padding again, the arcs (16 bytes
   each).

The dictionary is the FST that DeepSpeech's ``Scorer::fill_dictionary`` builds: one chain per word whose labels are
alphabet index + 1 followed by the space label, then RmEpsilon, Determinize and (acyclic) Minimize. That result is
the minimal deterministic acceptor of the word set; the state numbering below reproduces OpenFST's: Determinize
numbers the prefix tree breadth first with arcs in label order, the acyclic minimiser keeps, per class of equivalent
states, the tree state its partition lists first (the highest-numbered state of the class's height for the class that
keeps the height's partition slot, the lowest-numbered one for every other class), and Connect renumbers the kept
states in their old order. Arcs leave every state sorted by label, as the decoder's SortedMatcher needs.
"""

from __future__ import annotations

import mmap
import os
import shutil
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

import numpy

from deepspeech_it.data.alphabet import Alphabet
from deepspeech_it.util.atomic import atomic_path
from deepspeech_it.util.errors import PipelineError

TRIE_MAGIC = 0x54524945  # the C++ multi-character constant 'TRIE'
SCORER_VERSION = 6
TRAILER = struct.Struct("<iiBdd")  # magic, version, utf8 flag, alpha, beta: 25 bytes, no padding
TRAILER_SIGNATURE = struct.pack("<ii", TRIE_MAGIC, SCORER_VERSION)

FST_MAGIC = 2125659606
FST_TYPE = "const"
ARC_TYPE = "standard"
FST_ALIGNED_VERSION = 1
FST_FLAG_ALIGNED = 0x4
ALIGNMENT = 16
STATE_DTYPE = numpy.dtype([("final", "<f4"), ("pos", "<u4"), ("narcs", "<u4"), ("niepsilons", "<u4"),
                           ("noepsilons", "<u4")])
ARC_DTYPE = numpy.dtype([("ilabel", "<i4"), ("olabel", "<i4"), ("weight", "<f4"), ("nextstate", "<i4")])

# Tokens KenLM puts in every vocabulary; fill_dictionary leaves them out.
SPECIAL_TOKENS = frozenset({"<s>", "</s>", "<unk>"})

# OpenFST 1.6.7 property bits (properties.h) that a ConstFst header carries.
EXPANDED = 0x1
ACCEPTOR, NOT_ACCEPTOR = 0x10000, 0x20000
I_DETERMINISTIC, NON_I_DETERMINISTIC = 0x40000, 0x80000
O_DETERMINISTIC, NON_O_DETERMINISTIC = 0x100000, 0x200000
NO_EPSILONS, NO_I_EPSILONS, NO_O_EPSILONS = 0x800000, 0x2000000, 0x8000000
I_LABEL_SORTED, NOT_I_LABEL_SORTED = 0x10000000, 0x20000000
O_LABEL_SORTED, NOT_O_LABEL_SORTED = 0x40000000, 0x80000000
UNWEIGHTED = 0x200000000
ACYCLIC, INITIAL_ACYCLIC = 0x800000000, 0x2000000000
TOP_SORTED, NOT_TOP_SORTED = 0x4000000000, 0x8000000000
ACCESSIBLE, CO_ACCESSIBLE = 0x10000000000, 0x40000000000
STRING, NOT_STRING = 0x100000000000, 0x200000000000
UNWEIGHTED_CYCLES = 0x800000000000


class ScorerError(PipelineError, ValueError):
    pass


@dataclass(frozen=True)
class Dictionary:
    """A dictionary FST in ConstFst order: ``states`` and ``arcs`` are numpy arrays of the on-disk records."""

    start: int
    states: numpy.ndarray
    arcs: numpy.ndarray
    properties: int
    words_added: int
    words_skipped: int

    @property
    def num_states(self) -> int:
        return len(self.states)

    @property
    def num_arcs(self) -> int:
        return len(self.arcs)


# ---- building the dictionary --------------------------------------------------------------------------------


def word_labels(words: Iterable[str], alphabet: Alphabet) -> tuple[list[tuple[int, ...]], int]:
    """Each distinct word as FST labels (alphabet index + 1, then the space label); words with a character outside
    the alphabet are skipped and counted, as DeepSpeech's add_word_to_dictionary does."""
    char_map = {label: index + 1 for index, label in enumerate(alphabet.labels)}
    space = alphabet.space_index + 1
    sequences, skipped = [], 0
    for word in set(words) - SPECIAL_TOKENS:
        try:
            sequences.append(tuple(char_map[ch] for ch in word) + (space,))
        except KeyError:
            skipped += 1
    return sequences, skipped


class _Node:
    """A prefix-tree state while its subtree is still being read."""

    __slots__ = ("depth", "rank", "arcs", "final")

    def __init__(self, depth: int, rank: int):
        self.depth, self.rank, self.arcs, self.final = depth, rank, [], False


def build_dictionary(words: Iterable[str], alphabet: Alphabet) -> Dictionary:
    """The minimal deterministic acceptor of WORDS (each followed by a space), numbered as OpenFST numbers it."""
    sequences, skipped = word_labels(words, alphabet)
    if not sequences:
        raise ScorerError("no word of the vocabulary can be spelt with the alphabet")
    sequences.sort()

    # Register of equivalence classes (Daciuk et al.'s incremental construction over sorted input): a finished
    # tree state is identified by whether it is final and by its arcs (label, class of the target).
    register: dict[tuple, int] = {}
    class_signature: list[tuple] = []
    class_height: list[int] = []
    class_first: list[tuple[int, int]] = []  # smallest (depth, rank) of its tree states = breadth-first order
    height_last: dict[int, tuple[tuple[int, int], int]] = {}  # height -> (largest (depth, rank), its class)
    nodes_at_depth: list[int] = [1]

    def finish(node: _Node) -> int:
        signature = (node.final, tuple(node.arcs))
        key = (node.depth, node.rank)
        cls = register.get(signature)
        if cls is None:
            cls = len(class_signature)
            register[signature] = cls
            class_signature.append(signature)
            class_height.append(1 + max(class_height[c] for _, c in node.arcs) if node.arcs else 0)
            class_first.append(key)
        elif key < class_first[cls]:
            class_first[cls] = key
        height = class_height[cls]
        if height not in height_last or height_last[height][0] < key:
            height_last[height] = (key, cls)
        return cls

    path = [_Node(0, 0)]
    previous: tuple[int, ...] = ()
    for sequence in sequences:
        common = 0
        while common < len(previous) and previous[common] == sequence[common]:
            common += 1
        while len(path) > common + 1:
            child = path.pop()
            path[-1].arcs.append((previous[len(path) - 1], finish(child)))
        for depth in range(common + 1, len(sequence) + 1):
            if depth == len(nodes_at_depth):
                nodes_at_depth.append(0)
            path.append(_Node(depth, nodes_at_depth[depth]))
            nodes_at_depth[depth] += 1
        path[-1].final = True
        previous = sequence
    while len(path) > 1:
        child = path.pop()
        path[-1].arcs.append((previous[len(path) - 1], finish(child)))
    root = finish(path[0])

    # The representative of each class and hence the final state order (see the module docstring).
    depth_offset = numpy.concatenate([[0], numpy.cumsum(nodes_at_depth)[:-1]])
    first_in_partition = {cls: key for key, cls in height_last.values()}
    representative = [first_in_partition.get(cls, key) for cls, key in enumerate(class_first)]
    tree_order = [int(depth_offset[depth]) + rank for depth, rank in representative]
    order = sorted(range(len(class_signature)), key=tree_order.__getitem__)
    state_of_class = numpy.empty(len(order), dtype=numpy.int64)
    state_of_class[order] = numpy.arange(len(order))

    states = numpy.zeros(len(order), dtype=STATE_DTYPE)
    narcs = numpy.array([len(class_signature[cls][1]) for cls in order], dtype=numpy.int64)
    states["final"] = [0.0 if class_signature[cls][0] else numpy.inf for cls in order]
    states["narcs"] = narcs
    states["pos"] = numpy.concatenate([[0], numpy.cumsum(narcs)[:-1]])
    arcs = numpy.zeros(int(narcs.sum()), dtype=ARC_DTYPE)
    flat = [pair for cls in order for pair in class_signature[cls][1]]
    if flat:
        labels, targets = zip(*flat)
        arcs["ilabel"] = arcs["olabel"] = labels
        arcs["nextstate"] = state_of_class[list(targets)]
    start = int(state_of_class[root])
    return Dictionary(start, states, arcs, dictionary_properties(start, states, arcs), len(sequences), skipped)


def dictionary_properties(start: int, states: numpy.ndarray, arcs: numpy.ndarray) -> int:
    """The header's property word: what OpenFST's ComputeProperties finds, plus kExpanded.

    The dictionary is an unweighted acceptor without epsilons whose every state lies on a path from the start to a
    final state and that has no cycle (it is built from a finite word list), so those bits are fixed; the rest are
    measured on the arrays as ComputeProperties measures them."""
    props = (EXPANDED | ACCEPTOR | NO_EPSILONS | NO_I_EPSILONS | NO_O_EPSILONS | UNWEIGHTED | ACYCLIC
             | INITIAL_ACYCLIC | ACCESSIBLE | CO_ACCESSIBLE | UNWEIGHTED_CYCLES)
    source = numpy.repeat(numpy.arange(len(states)), states["narcs"].astype(numpy.int64))
    same_state = source[1:] == source[:-1]
    labels = arcs["ilabel"]
    sorted_labels = not numpy.any(same_state & (labels[1:] < labels[:-1]))
    by_state = numpy.lexsort((labels, source))
    repeated = (source[by_state][1:] == source[by_state][:-1]) & (labels[by_state][1:] == labels[by_state][:-1])
    deterministic = not numpy.any(repeated)
    props |= (I_LABEL_SORTED | O_LABEL_SORTED) if sorted_labels else (NOT_I_LABEL_SORTED | NOT_O_LABEL_SORTED)
    props |= (I_DETERMINISTIC | O_DETERMINISTIC) if deterministic else (NON_I_DETERMINISTIC | NON_O_DETERMINISTIC)
    props |= TOP_SORTED if numpy.all(arcs["nextstate"] > source) else NOT_TOP_SORTED
    props |= STRING if _is_string(start, states, arcs, source) else NOT_STRING
    return props


def _is_string(start: int, states: numpy.ndarray, arcs: numpy.ndarray, source: numpy.ndarray) -> bool:
    # ComputeProperties' kString: arcs only go to the next state, no state follows a final one, every non-final
    # state has exactly one arc, and the start is state 0.
    final = numpy.isfinite(states["final"])
    finals_before = numpy.cumsum(final) - final
    return bool(start == 0 and numpy.all(arcs["nextstate"] == source + 1) and not numpy.any(finals_before > 0)
                and numpy.all(states["narcs"][~final] == 1))


# ---- writing --------------------------------------------------------------------------------------------------


def _string(text: str) -> bytes:
    raw = text.encode("ascii")
    return struct.pack("<i", len(raw)) + raw


def _padding(offset: int) -> bytes:
    return b"\0" * (-offset % ALIGNMENT)


def fst_bytes(dictionary: Dictionary, offset: int) -> bytes:
    """The dictionary as ConstFst::Write with align=true writes it when the stream is at file offset OFFSET."""
    header = (struct.pack("<i", FST_MAGIC) + _string(FST_TYPE) + _string(ARC_TYPE)
              + struct.pack("<iiQqqq", FST_ALIGNED_VERSION, FST_FLAG_ALIGNED, dictionary.properties,
                            dictionary.start, dictionary.num_states, dictionary.num_arcs))
    parts = [header, _padding(offset + len(header))]
    position = offset + len(header) + len(parts[1])
    states = dictionary.states.tobytes()
    parts += [states, _padding(position + len(states))]
    parts.append(dictionary.arcs.tobytes())
    return b"".join(parts)


def stored_weight(value: float) -> float:
    """generate_scorer_package parses alpha and beta as C++ floats before storing them as doubles; so do we, so
    that the package is identical to the one it makes and the decoder (which reads them back as float) sees the
    same numbers."""
    return float(numpy.float32(value))


def trailer_bytes(alpha: float, beta: float, utf8: bool = False) -> bytes:
    return TRAILER.pack(TRIE_MAGIC, SCORER_VERSION, int(utf8), stored_weight(alpha), stored_weight(beta))


def write_scorer(path: str | Path, kenlm_binary: str | Path, dictionary: Dictionary, alpha: float,
                 beta: float) -> int:
    """Writes the package atomically: PATH appears complete or not at all. Returns its size in bytes."""
    kenlm_size = Path(kenlm_binary).stat().st_size
    with atomic_path(path) as temp:
        shutil.copyfile(kenlm_binary, temp)
        with open(temp, "ab") as out:
            trailer = trailer_bytes(alpha, beta)
            out.write(trailer)
            out.write(fst_bytes(dictionary, kenlm_size + len(trailer)))
        size = temp.stat().st_size
    return size


# ---- reading --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Scorer:
    """A scorer package read back: where its parts are and what they hold."""

    path: Path
    kenlm_size: int  # bytes of the KenLM model = offset of the trailer
    magic: int
    version: int
    utf8: bool
    alpha: float
    beta: float
    fst_type: str
    arc_type: str
    fst_version: int
    fst_flags: int
    properties: int
    start: int
    states: numpy.ndarray
    arcs: numpy.ndarray
    states_offset: int
    arcs_offset: int

    def state_arcs(self, state: int) -> numpy.ndarray:
        record = self.states[state]
        return self.arcs[int(record["pos"]):int(record["pos"]) + int(record["narcs"])]

    def label_sequences(self) -> Iterator[tuple[int, ...]]:
        """Every label sequence from the start to a final state (depth first, in label order)."""
        stack = [(self.start, ())]
        while stack:
            state, prefix = stack.pop()
            if len(prefix) > len(self.states):       # no path of an acyclic FST is longer
                raise ScorerError(f"{self.path}: the dictionary has a cycle; the scorer is damaged")
            if numpy.isfinite(self.states[state]["final"]):
                yield prefix
            for arc in reversed(self.state_arcs(state)):
                stack.append((int(arc["nextstate"]), prefix + (int(arc["ilabel"]),)))

    def words(self, alphabet: Alphabet) -> Iterator[str]:
        """The dictionary's words (labels decoded with ALPHABET, the closing space dropped). Raises ScorerError when
        a path does not end with the space label."""
        space = alphabet.space_index + 1
        for sequence in self.label_sequences():
            if not sequence or sequence[-1] != space:
                raise ScorerError(f"dictionary path {sequence} does not end with the space label")
            yield alphabet.decode(label - 1 for label in sequence[:-1])


def _read_string(data, offset: int) -> tuple[str, int]:
    (length,) = struct.unpack_from("<i", data, offset)
    start = offset + 4
    return bytes(data[start:start + length]).decode("ascii"), start + length


def _parse_fst(data, offset: int) -> tuple[dict, int]:
    """Parses an aligned ConstFst at OFFSET; returns its fields and the offset just past it."""
    (magic,) = struct.unpack_from("<i", data, offset)
    if magic != FST_MAGIC:
        raise ScorerError("no OpenFST header after the scorer trailer")
    fst_type, position = _read_string(data, offset + 4)
    arc_type, position = _read_string(data, position)
    version, flags, properties, start, num_states, num_arcs = struct.unpack_from("<iiQqqq", data, position)
    position += struct.calcsize("<iiQqqq")
    if fst_type != FST_TYPE or arc_type != ARC_TYPE:
        raise ScorerError(f"dictionary is a {fst_type}/{arc_type} FST, not const/standard")
    if not flags & FST_FLAG_ALIGNED and version != FST_ALIGNED_VERSION:
        raise ScorerError("dictionary FST is not written aligned")
    position += -position % ALIGNMENT
    states_offset = position
    position += num_states * STATE_DTYPE.itemsize
    position += -position % ALIGNMENT
    arcs_offset = position
    end = position + num_arcs * ARC_DTYPE.itemsize
    fields = dict(fst_type=fst_type, arc_type=arc_type, fst_version=version, fst_flags=flags, properties=properties,
                  start=start, num_states=num_states, num_arcs=num_arcs, states_offset=states_offset,
                  arcs_offset=arcs_offset)
    return fields, end


def find_trailer(data) -> int:
    """Offset of the 'TRIE' trailer: the last place where the trailer signature is followed by an FST that ends
    exactly at the end of the file (the FST's own sizes make a chance match in the KenLM bytes impossible)."""
    end = len(data)
    while True:
        offset = data.rfind(TRAILER_SIGNATURE, 0, end)
        if offset < 0:
            raise ScorerError("no 'TRIE' trailer: not a DeepSpeech 0.9 scorer package")
        try:
            _, fst_end = _parse_fst(data, offset + TRAILER.size)
            if fst_end == len(data):
                return offset
        except (ScorerError, struct.error, UnicodeDecodeError):
            pass
        end = offset + len(TRAILER_SIGNATURE) - 1


def read_scorer(path: str | Path) -> Scorer:
    """The package at PATH; ScorerError, naming the file, when it is empty, truncated or not a scorer."""
    path = Path(path)
    try:
        with open(path, "rb") as handle:
            if os.fstat(handle.fileno()).st_size == 0:
                raise ScorerError("the file is empty")
            with mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as data:
                offset = find_trailer(data)
                magic, version, utf8, alpha, beta = TRAILER.unpack_from(data, offset)
                fields, _ = _parse_fst(data, offset + TRAILER.size)
                states = numpy.frombuffer(data, STATE_DTYPE, fields.pop("num_states"), fields["states_offset"]).copy()
                arcs = numpy.frombuffer(data, ARC_DTYPE, fields.pop("num_arcs"), fields["arcs_offset"]).copy()
        _check_dictionary(fields["start"], states, arcs)
    except ScorerError as problem:
        raise ScorerError(f"{path}: {problem} (truncated or damaged? build it again with make build-lm)") from None
    except OSError as problem:
        raise ScorerError(f"{path}: cannot be read: {problem.strerror}") from None
    return Scorer(path=path, kenlm_size=offset, magic=magic, version=version, utf8=bool(utf8), alpha=alpha,
                  beta=beta, states=states, arcs=arcs, **fields)


def _check_dictionary(start: int, states: numpy.ndarray, arcs: numpy.ndarray) -> None:
    """Every index of the FST inside its arrays, so that reading the words cannot run off them."""
    if not 0 <= start < len(states):
        raise ScorerError(f"dictionary start state {start} of {len(states)}")
    if len(states) and (states["pos"].astype(numpy.int64) + states["narcs"] > len(arcs)).any():
        raise ScorerError("dictionary states point past its arcs")
    if len(arcs) and not ((arcs["nextstate"] >= 0) & (arcs["nextstate"] < len(states))).all():
        raise ScorerError("dictionary arcs lead to states it does not have")


def set_default_alpha_beta(path: str | Path, alpha: float, beta: float) -> None:
    """Rewrites only the trailer's alpha and beta; the package is replaced atomically (a copy is patched and
    renamed over it), so a reader never sees a half-written file."""
    path = Path(path)
    offset = read_scorer(path).kenlm_size
    weights = trailer_bytes(alpha, beta)[-16:]
    with atomic_path(path) as temp:
        shutil.copyfile(path, temp)
        with open(temp, "r+b") as handle:
            handle.seek(offset + TRAILER.size - len(weights))
            handle.write(weights)
            handle.flush()
            os.fsync(handle.fileno())
