"""Read and write 3D images through SimpleITK, keeping their geometry.

Arrays are ``(Z, Y, X)`` (images of one case stacked as ``(C, Z, Y, X)``); spacing is ``(z, y, x)`` in
mm, the reverse of SimpleITK's ``(x, y, z)``. Origin and direction keep SimpleITK's order.

Exactness: ``.mha`` and ``.mhd`` store geometry as float64 text and round-trip bit for bit. ``.nrrd``
stores spacing times direction (``space directions``), so spacing and direction come back to ~1e-15.
NIfTI (``.nii``/``.nii.gz``) stores spacing, origin and direction as float32 (a limit of the format):
geometry read from a NIfTI file is written back bit for bit for axis-aligned directions; oblique
directions are re-derived from a float32 quaternion and agree to ~1e-7.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk

from fastpanc.data._nifti import nifti_truncation
from fastpanc.data.case_files import find_cases  # re-exported: part of the io API

SUPPORTED_ENDINGS: tuple[str, ...] = (".nii.gz", ".nii", ".nrrd", ".mha", ".mhd")

# Tolerances for "same geometry" between channels of one case and between image and mask.
SPACING_RTOL = 1e-5
ORIGIN_ATOL_MM = 1e-3
DIRECTION_ATOL = 1e-5
LABEL_ROUND_TOL = 1e-3
# direction cosines must be orthonormal to this (headers round them; NIfTI to float32 ~1e-7)
DIRECTION_ORTHO_ATOL = 1e-4

_WRITABLE_DTYPES = (
    np.uint8,
    np.int8,
    np.uint16,
    np.int16,
    np.uint32,
    np.int32,
    np.uint64,
    np.int64,
    np.float32,
    np.float64,
)


def file_ending(path: str | os.PathLike[str]) -> str:
    """The supported ending of ``path`` (``.nii.gz``, ``.nii``, ``.nrrd``, ``.mha``, ``.mhd``).

    Raises:
        ValueError: the name ends otherwise.
    """
    name = Path(path).name.lower()
    for ending in SUPPORTED_ENDINGS:
        if name.endswith(ending):
            return ending
    raise ValueError(f"{path}: unsupported image file ending; expected one of {', '.join(SUPPORTED_ENDINGS)}")


@dataclass(frozen=True)
class Geometry:
    """Where the voxels of a 3D image lie in patient space.

    Attributes:
        spacing: voxel size ``(z, y, x)`` in mm (the reverse of SimpleITK's order).
        origin: position of voxel ``(0, 0, 0)`` in SimpleITK order ``(x, y, z)``, mm.
        direction: the 3x3 direction cosine matrix, row-major, 9 values in SimpleITK order.
    """

    spacing: tuple[float, float, float]
    origin: tuple[float, float, float]
    direction: tuple[float, ...]

    def __post_init__(self) -> None:
        spacing = tuple(float(s) for s in self.spacing)
        origin = tuple(float(o) for o in self.origin)
        direction = tuple(float(d) for d in self.direction)
        if len(spacing) != 3 or not all(np.isfinite(s) and s > 0 for s in spacing):
            raise ValueError(
                f"Geometry: spacing must be 3 finite positive values (z, y, x) in mm, got {self.spacing}"
            )
        if len(origin) != 3 or not all(np.isfinite(o) for o in origin):
            raise ValueError(f"Geometry: origin must be 3 finite values (x, y, z), got {self.origin}")
        if len(direction) != 9 or not all(np.isfinite(d) for d in direction):
            raise ValueError(
                f"Geometry: direction must be 9 finite values (a row-major 3x3), got {self.direction}"
            )
        rows = np.asarray(direction).reshape(3, 3)
        if not np.allclose(rows @ rows.T, np.eye(3), rtol=0.0, atol=DIRECTION_ORTHO_ATOL):
            raise ValueError(
                f"Geometry: direction must be direction cosines (an orthonormal 3x3, det +-1), got {self.direction} "
                f"(determinant {np.linalg.det(rows):.6g}); fix the image header's orientation"
            )
        object.__setattr__(self, "spacing", spacing)
        object.__setattr__(self, "origin", origin)
        object.__setattr__(self, "direction", direction)

    @classmethod
    def identity(cls, spacing: Sequence[float] = (1.0, 1.0, 1.0)) -> Geometry:
        """Axis-aligned geometry at the origin with ``spacing`` ``(z, y, x)``."""
        return cls(tuple(spacing), (0.0, 0.0, 0.0), (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0))

    @classmethod
    def from_sitk(cls, img: sitk.Image) -> Geometry:
        """The geometry of a 3D SimpleITK image."""
        if img.GetDimension() != 3:
            raise ValueError(f"Geometry.from_sitk: expected a 3D image, got {img.GetDimension()}D")
        return cls(tuple(reversed(img.GetSpacing())), img.GetOrigin(), img.GetDirection())

    def apply_to(self, img: sitk.Image) -> sitk.Image:
        """Set spacing, origin and direction on ``img`` (in place) and return it."""
        img.SetSpacing(tuple(reversed(self.spacing)))
        img.SetOrigin(self.origin)
        img.SetDirection(self.direction)
        return img

    def to_dict(self) -> dict[str, list[float]]:
        """JSON-able form; Python floats serialise exactly (shortest repr) through ``json``."""
        return {"spacing": list(self.spacing), "origin": list(self.origin), "direction": list(self.direction)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Geometry:
        """Inverse of :meth:`to_dict`."""
        missing = {"spacing", "origin", "direction"} - set(d)
        if missing:
            raise ValueError(
                f"Geometry.from_dict: missing keys {sorted(missing)}; expected spacing, origin, direction"
            )
        return cls(tuple(d["spacing"]), tuple(d["origin"]), tuple(d["direction"]))

    def mismatch(self, other: Geometry) -> str | None:
        """Why ``other`` is not the same geometry (within the module tolerances), or None when it is."""
        if not np.allclose(self.spacing, other.spacing, rtol=SPACING_RTOL, atol=0.0):
            return f"spacing {self.spacing} vs {other.spacing}"
        if not np.allclose(self.origin, other.origin, rtol=0.0, atol=ORIGIN_ATOL_MM):
            return f"origin {self.origin} vs {other.origin}"
        if not np.allclose(self.direction, other.direction, rtol=0.0, atol=DIRECTION_ATOL):
            return f"direction {self.direction} vs {other.direction}"
        return None


def _read_sitk(path: str | os.PathLike[str]) -> sitk.Image:
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"{p}: image file not found" + (" (it is a folder)" if p.is_dir() else ""))
    file_ending(p)
    try:
        img = sitk.ReadImage(str(p))
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
        raise ValueError(
            f"{p}: cannot read the image (corrupt, truncated or not an image file): {first}"
        ) from exc
    if file_ending(p) in (".nii", ".nii.gz"):
        why = nifti_truncation(p)
        if why is not None:
            raise ValueError(f"{p}: cannot read the image: {why}")
    if img.GetDimension() != 3:
        raise ValueError(
            f"{p}: expected a 3D image, got a {img.GetDimension()}D image of size {img.GetSize()}; "
            "fastpanc reads one 3D volume per file (split 4D series into one file per channel)"
        )
    if img.GetNumberOfComponentsPerPixel() != 1:
        raise ValueError(
            f"{p}: expected one scalar per voxel, got {img.GetNumberOfComponentsPerPixel()} "
            "components (vector/RGB image); store each channel as its own {CASE}_{XXXX} file"
        )
    return img


def read_image(path: str | os.PathLike[str]) -> tuple[np.ndarray, Geometry]:
    """Read one 3D image.

    Returns:
        ``(array, geometry)``: the array is ``(Z, Y, X)`` in the file's own dtype.

    Raises:
        FileNotFoundError: no such file.
        ValueError: unsupported ending, unreadable (corrupt, truncated), not 3D, or not scalar.
    """
    img = _read_sitk(path)
    geometry = Geometry.from_sitk(img)
    try:
        arr = sitk.GetArrayFromImage(img)
    except RuntimeError as exc:
        raise ValueError(f"{path}: cannot decode the voxel data: {exc}") from exc
    return arr, geometry


def read_case(paths: Sequence[str | os.PathLike[str]]) -> tuple[np.ndarray, Geometry]:
    """Read the channels of one case and stack them.

    Args:
        paths: one file per channel, in channel order (``{CASE}_0000``, ``{CASE}_0001``, ...).

    Returns:
        ``(array (C, Z, Y, X), geometry)``; the array has the channels' common (promoted) dtype.

    Raises:
        ValueError: no paths, or two channels differ in shape or geometry (both files are named).
    """
    if len(paths) == 0:
        raise ValueError("read_case: expected at least one channel file, got none")
    arrays: list[np.ndarray] = []
    first_geometry: Geometry | None = None
    for path in paths:
        arr, geometry = read_image(path)
        if first_geometry is None:
            first_geometry = geometry
        else:
            if arr.shape != arrays[0].shape:
                raise ValueError(
                    f"channels of one case differ in shape: {paths[0]} has (Z, Y, X) {arrays[0].shape}, "
                    f"{path} has {arr.shape}; resample them onto one grid"
                )
            why = first_geometry.mismatch(geometry)
            if why is not None:
                raise ValueError(
                    f"channels of one case differ in geometry: {paths[0]} and {path}: {why}; "
                    "resample them onto one grid"
                )
        arrays.append(arr)
    assert first_geometry is not None
    dtype = np.result_type(*arrays)
    return np.stack([a.astype(dtype, copy=False) for a in arrays]), first_geometry


def labels_from_array(
    arr: np.ndarray, allowed: Sequence[int] = (0, 1, 2), source: str = "labels"
) -> np.ndarray:
    """Round a label array to integers and check its values.

    Args:
        arr: ``(Z, Y, X)`` of any numeric dtype (float masks such as 1.0000152587890625 are rounded).
        allowed: the label values the dataset defines (each in 0..255).
        source: the file or case named in errors.

    Returns:
        ``uint8`` array of ``arr``'s shape.

    Raises:
        ValueError: non-finite values, values more than 1e-3 from an integer, or values outside ``allowed``.
    """
    allowed_set = {int(a) for a in allowed}
    if not allowed_set or min(allowed_set) < 0 or max(allowed_set) > 255:
        raise ValueError(f"allowed labels must be integers in 0..255, got {sorted(allowed_set)}")
    if arr.dtype == np.bool_:
        arr = arr.astype(np.uint8)
    if np.issubdtype(arr.dtype, np.floating):
        if not np.isfinite(arr).all():
            raise ValueError(
                f"{source}: labels contain NaN or infinite values; expected integers in {sorted(allowed_set)}"
            )
        rounded = np.rint(arr)
        off = np.abs(arr - rounded) > LABEL_ROUND_TOL
        if off.any():
            bad = np.unique(arr[off])[:10]
            raise ValueError(
                f"{source}: labels are not integers (more than {LABEL_ROUND_TOL} from one): found "
                f"{bad.tolist()}; expected integer labels {sorted(allowed_set)}"
            )
        values = np.unique(rounded)
    elif np.issubdtype(arr.dtype, np.integer):
        rounded = arr
        values = np.unique(arr)
    else:
        raise ValueError(f"{source}: labels of dtype {arr.dtype} are not numeric")
    extra = [v for v in values.tolist() if int(v) not in allowed_set]
    if extra:
        raise ValueError(
            f"{source}: label values {[int(v) for v in extra]} are outside the allowed "
            f"{sorted(allowed_set)} (values found: {[int(v) for v in values.tolist()]})"
        )
    return rounded.astype(np.uint8)


def read_labels(
    path: str | os.PathLike[str], allowed: Sequence[int] = (0, 1, 2)
) -> tuple[np.ndarray, Geometry]:
    """Read a label mask, rounding float labels to integers.

    Returns:
        ``(labels uint8 (Z, Y, X), geometry)``.

    Raises:
        FileNotFoundError, ValueError: as :func:`read_image`, plus values that are not integral
        (beyond 1e-3) or not in ``allowed`` (the error names the file and the values found).
    """
    arr, geometry = read_image(path)
    return labels_from_array(arr, allowed, source=str(path)), geometry


def write_image(
    path: str | os.PathLike[str], array: np.ndarray, geometry: Geometry, compress: bool = True
) -> Path:
    """Write a 3D array atomically: into a temporary folder beside ``path``, then ``os.replace``.

    Args:
        path: target file; its ending picks the format (``.mhd`` also writes its ``.raw``/``.zraw``).
        array: ``(Z, Y, X)``; dtype kept (bool is written as uint8; float16 is refused).
        geometry: spacing ``(z, y, x)``, origin and direction written with the image.
        compress: compress the voxel data where the format allows.

    Returns:
        The written path.
    """
    p = Path(path)
    file_ending(p)
    arr = np.asarray(array)
    if arr.ndim != 3:
        raise ValueError(f"{p}: write_image expects a (Z, Y, X) array, got shape {arr.shape}")
    if arr.dtype == np.bool_:
        arr = arr.astype(np.uint8)
    if arr.dtype.type not in _WRITABLE_DTYPES:
        raise ValueError(
            f"{p}: cannot write dtype {arr.dtype}; expected one of "
            f"{[np.dtype(d).name for d in _WRITABLE_DTYPES]} (cast float16 to float32 first)"
        )
    img = geometry.apply_to(sitk.GetImageFromArray(np.ascontiguousarray(arr), isVector=False))
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp_dir = Path(tempfile.mkdtemp(prefix=f".{p.name}.", suffix=".tmp", dir=p.parent))
    try:
        if file_ending(p) != ".mhd":
            # a plain temporary name: ITK's NIfTI writer would turn a name like "x.nii.nii.gz" into "x.nii"
            tmp_file = tmp_dir / f"image{file_ending(p)}"
            sitk.WriteImage(img, str(tmp_file), useCompression=compress)
            os.replace(tmp_file, p)
            return p
        sitk.WriteImage(img, str(tmp_dir / p.name), useCompression=compress)
        # data files (.raw/.zraw of .mhd) first, the header last: readers never see a header without data
        produced = sorted(tmp_dir.iterdir(), key=lambda f: f.name == p.name)
        for f in produced:
            os.replace(f, p.parent / f.name)
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)
    return p


__all__ = [
    "SUPPORTED_ENDINGS",
    "Geometry",
    "file_ending",
    "find_cases",
    "labels_from_array",
    "read_case",
    "read_image",
    "read_labels",
    "write_image",
]
