"""Reading safetensors files with numpy alone (the format is small enough not to need the
`safetensors` package): 8 bytes of little-endian header length, a JSON header naming each
tensor's dtype, shape and byte range, then the raw little-endian data."""
from __future__ import annotations

import json
import os
import struct
from typing import Dict, Tuple, Union

import numpy as np

__all__ = ["read_safetensors"]

_DTYPES = {
    "F64": "<f8", "F32": "<f4", "F16": "<f2",
    "I64": "<i8", "I32": "<i4", "I16": "<i2", "I8": "i1",
    "U64": "<u8", "U32": "<u4", "U16": "<u2", "U8": "u1",
    "BOOL": "?",
}


def read_safetensors(path: Union[str, os.PathLike]) -> Tuple[Dict[str, np.ndarray], Dict[str, str]]:
    """The tensors of a safetensors file (by name, in the file's order) and its metadata.

    BF16 tensors come back as float32 (numpy has no bfloat16; every bf16 value is exactly a
    float32 whose low 16 bits are zero)."""
    with open(path, "rb") as f:
        data = f.read()
    if len(data) < 8:
        raise ValueError(f"{path}: not a safetensors file (shorter than its 8-byte header length)")
    (length,) = struct.unpack("<Q", data[:8])
    if 8 + length > len(data):
        raise ValueError(f"{path}: not a safetensors file (header length {length} past the end)")
    header = json.loads(data[8 : 8 + length])
    metadata = header.pop("__metadata__", None) or {}
    body = memoryview(data)[8 + length :]
    tensors = {}
    for name, info in header.items():
        start, end = info["data_offsets"]
        dtype, shape = info["dtype"], tuple(info["shape"])
        raw = body[start:end]
        if dtype == "BF16":
            bits = np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16
            array = bits.view(np.float32)
        elif dtype in _DTYPES:
            array = np.frombuffer(raw, dtype=_DTYPES[dtype]).copy()
        else:
            raise ValueError(f"{path}: tensor {name!r} has dtype {dtype}, which this reader does not know")
        tensors[name] = array.reshape(shape)
    return tensors, metadata
