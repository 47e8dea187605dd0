"""Detect truncated NIfTI files, which ITK's reader fills with zeros instead of refusing.

The header says how many bytes the voxel data take (``vox_offset + prod(dim) * bitpix / 8``). An
uncompressed ``.nii`` must be at least that long. For ``.nii.gz`` the gzip trailer holds the
uncompressed size modulo 2**32 (cheap to check); only when it disagrees (a truncated file, or a
multi-member gzip stream) is the stream decompressed to count its bytes.
"""

from __future__ import annotations

import gzip
import struct
import zlib
from pathlib import Path

_CHUNK = 1 << 22


def _header_bytes(path: Path) -> bytes:
    opener = gzip.open if path.name.lower().endswith(".gz") else open
    with opener(path, "rb") as f:
        return f.read(540)


def expected_nifti_size(path: Path) -> int | None:
    """Bytes of header plus voxel data the header of ``path`` promises, or None if unparseable."""
    try:
        hdr = _header_bytes(path)
    except (OSError, EOFError, zlib.error):
        return None
    if len(hdr) < 348:
        return None
    for endian in "<>":
        (sizeof_hdr,) = struct.unpack(endian + "i", hdr[:4])
        if sizeof_hdr == 348:  # NIfTI-1
            dims = struct.unpack(endian + "8h", hdr[40:56])
            (bitpix,) = struct.unpack(endian + "h", hdr[72:74])
            (vox_offset,) = struct.unpack(endian + "f", hdr[108:112])
            break
        if sizeof_hdr == 540 and len(hdr) >= 540:  # NIfTI-2
            (bitpix,) = struct.unpack(endian + "h", hdr[14:16])
            dims = struct.unpack(endian + "8q", hdr[16:80])
            (vox_offset,) = struct.unpack(endian + "q", hdr[168:176])
            break
    else:
        return None
    ndim = int(dims[0])
    if not 1 <= ndim <= 7 or bitpix <= 0:
        return None
    n = 1
    for d in dims[1 : ndim + 1]:
        n *= max(int(d), 1)
    return int(vox_offset) + n * (int(bitpix) // 8)


def _gzip_payload_size(path: Path) -> int:
    total = 0
    with gzip.open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            total += len(chunk)
    return total


def nifti_truncation(path: Path) -> str | None:
    """Why ``path`` (``.nii`` or ``.nii.gz``) holds fewer bytes than its header promises, or None."""
    expected = expected_nifti_size(path)
    if expected is None:
        return None
    if not path.name.lower().endswith(".gz"):
        size = path.stat().st_size
        return (
            None
            if size >= expected
            else f"truncated: the header promises {expected} bytes, the file has {size}"
        )
    with open(path, "rb") as f:
        f.seek(-4, 2)
        (isize,) = struct.unpack("<I", f.read(4))
    if isize == expected % (1 << 32):
        return None
    try:
        size = _gzip_payload_size(path)
    except (EOFError, OSError, zlib.error) as exc:
        return f"truncated or corrupt gzip stream ({exc})"
    if size < expected:
        return f"truncated: the header promises {expected} bytes, the gzip stream holds {size}"
    return None
