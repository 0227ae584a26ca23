"""TensorFlow's memory-mapped model format (``.pbmm``), written and read in Python.

The format of TensorFlow's ``convert_graphdef_memmapped_format`` tool (contrib/util, Apache-2.0, gone from
TensorFlow 2), which DeepSpeech 0.9.3 used for its release; this is the project's own writer. Every large constant of
a frozen GraphDef becomes an ``ImmutableConst`` node that reads its tensor from a region of the file; the client's
``MemmappedEnv`` maps the file instead of reading it, so the weights stay in the page cache, shared and never copied.

File layout: the tensors' raw bytes (row-major, little-endian), each starting at an offset aligned to ALIGNMENT; the
rewritten GraphDef as the region ``memmapped_package://.``; a ``MemmappedFileSystemDirectory`` protobuf naming every
region with its offset and length; the directory's offset as a little-endian uint64. TensorFlow's reader needs
offsets that strictly increase and unique names; ImmutableConst needs 64-byte aligned regions at least as long as
its tensor, and cannot hold strings. TensorFlow 2.3's reader takes each region's length from the directory (later
versions from the next offset), so lengths are written.
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass

import numpy as np

from deepspeech_it.util.errors import PipelineError
from deepspeech_it.util.tf_runtime import tf

PACKAGE_PREFIX = "memmapped_package://"
GRAPH_REGION = PACKAGE_PREFIX + "."
# TensorFlow pads to its allocator's 64 bytes; 512 is a multiple of that and of every SIMD alignment.
ALIGNMENT = 512
MIN_CONVERSION_BYTES = 10_000    # the tool's default --min_conversion_tensor_size: smaller constants stay inline
_OFFSET = struct.Struct("<Q")


class MemmappedError(PipelineError, ValueError):
    """A file that is not a well-formed memory-mapped package."""


@dataclass(frozen=True)
class Region:
    name: str
    offset: int
    length: int


def to_memmapped(graph_def: tf.compat.v1.GraphDef, min_bytes: int = MIN_CONVERSION_BYTES) -> bytes:
    """GRAPH_DEF as a memory-mapped package: its numeric constants of MIN_BYTES or more become regions."""
    rewritten = tf.compat.v1.GraphDef()
    rewritten.CopyFrom(graph_def)
    tensors: list[tuple[str, bytes]] = []
    for node in rewritten.node:
        tensor = _mappable(node, min_bytes)
        if tensor is None:
            continue
        name = _region_name(node.name, {n for n, _ in tensors})
        dtype = node.attr["dtype"].type
        node.op = "ImmutableConst"
        node.ClearField("attr")
        node.attr["dtype"].type = dtype
        node.attr["shape"].shape.CopyFrom(tf.TensorShape(tensor.shape).as_proto())
        node.attr["memory_region_name"].s = name.encode()
        tensors.append((name, np.ascontiguousarray(tensor, tensor.dtype.newbyteorder("<")).tobytes()))
    directory = _directory()
    out = bytearray()
    for name, data in tensors + [(GRAPH_REGION, rewritten.SerializeToString())]:
        if name != GRAPH_REGION:
            out += bytes(-len(out) % ALIGNMENT)
        element = directory.element.add()
        element.name, element.offset, element.length = name, len(out), len(data)
        out += data
    directory_offset = len(out)
    return bytes(out + directory.SerializeToString() + _OFFSET.pack(directory_offset))


def _directory():
    from tensorflow.core.util import memmapped_file_system_pb2  # after util.tf_runtime imported TensorFlow quietly

    return memmapped_file_system_pb2.MemmappedFileSystemDirectory()


def _mappable(node, min_bytes: int) -> np.ndarray | None:
    if node.op != "Const" or node.attr["dtype"].type == tf.string.as_datatype_enum:
        return None
    tensor = tf.make_ndarray(node.attr["value"].tensor)
    return tensor if tensor.nbytes >= min_bytes else None


def _region_name(node_name: str, taken: set[str]) -> str:
    """The tool's naming: characters other than [A-Za-z0-9_.] become '_', and '_' is appended until unique."""
    name = PACKAGE_PREFIX + re.sub(r"[^A-Za-z0-9_.]", "_", node_name)
    while name in taken:
        name += "_"
    return name


def read_directory(data: bytes) -> list[Region]:
    """The regions of a package, checked as TensorFlow's reader checks them."""
    if len(data) <= _OFFSET.size:
        raise MemmappedError("not a memory-mapped package: too short")
    directory_offset = _OFFSET.unpack_from(data, len(data) - _OFFSET.size)[0]
    if directory_offset > len(data) - _OFFSET.size:
        raise MemmappedError("not a memory-mapped package: directory offset past the end")
    directory = _directory()
    try:
        directory.ParseFromString(data[directory_offset:len(data) - _OFFSET.size])
    except Exception as problem:  # noqa: BLE001 - protobuf's DecodeError and friends
        raise MemmappedError(f"not a memory-mapped package: {problem}") from None
    regions = [Region(e.name, e.offset, e.length) for e in directory.element]
    ends = [r.offset for r in regions[1:]] + [directory_offset]
    for region, end in zip(regions, ends):
        if region.offset >= end or region.offset + region.length > end:
            raise MemmappedError(f"region {region.name} overlaps the next one")
    if len({r.name for r in regions}) != len(regions):
        raise MemmappedError("duplicate region names")
    return regions


def read_memmapped(data: bytes) -> tuple[tf.compat.v1.GraphDef, dict[str, bytes]]:
    """The package's GraphDef and the bytes of every tensor region, by region name."""
    regions = {r.name: data[r.offset:r.offset + r.length] for r in read_directory(data)}
    if GRAPH_REGION not in regions:
        raise MemmappedError(f"no {GRAPH_REGION} region")
    graph_def = tf.compat.v1.GraphDef.FromString(regions.pop(GRAPH_REGION))
    return graph_def, regions
