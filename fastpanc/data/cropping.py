"""nnU-Net v2's crop to the nonzero region: the bounding box of voxels that are nonzero in any channel.

Voxels inside the box that are zero in every channel and not enclosed by nonzero voxels are marked -1 in the
segmentation (nnU-Net's ``crop_to_nonzero``). Holes are filled on the cropped block only: beyond every face
of the box lies an all-zero slab that reaches the image border, so the result equals filling the whole image.
"""

from __future__ import annotations

import numpy as np
import torch

from fastpanc.ops import nonzero_bounding_box


def filled_nonzero_mask(crop: np.ndarray | torch.Tensor) -> np.ndarray:
    """Hole-filled mask of the voxels nonzero in any channel of a cropped ``(C, z, y, x)`` block.

    Returns:
        ``(z, y, x)`` bool numpy array (on the CPU whatever the input's device).
    """
    x = torch.as_tensor(crop)
    mask = (x != 0).any(dim=0).cpu().numpy()
    if mask.all():
        return mask
    from scipy.ndimage import binary_fill_holes  # only blocks with zeros inside need it

    return binary_fill_holes(mask)


def crop_to_nonzero(
    data: np.ndarray, seg: np.ndarray | None = None, nonzero_label: int = -1
) -> tuple[np.ndarray, np.ndarray, list[list[int]]]:
    """Crop ``data`` (C, Z, Y, X) and ``seg`` (1, Z, Y, X) to the nonzero bounding box.

    Returns:
        ``(data (C, z, y, x) view, seg (1, z, y, x) int8/int16 copy, bbox [[z0, z1], [y0, y1], [x0, x1]])``
        with half-open bounds. ``seg`` is ``nonzero_label`` where the (hole-filled) nonzero mask is false and
        the label was 0; without ``seg`` it is 0 inside the mask and ``nonzero_label`` outside. An all-zero
        image keeps its full extent, as in nnU-Net.
    """
    if data.ndim != 4:
        raise ValueError(f"crop_to_nonzero: expected data (C, Z, Y, X), got shape {data.shape}")
    if seg is not None and (seg.ndim != 4 or seg.shape[1:] != data.shape[1:]):
        raise ValueError(
            f"crop_to_nonzero: seg must be (1, Z, Y, X) of data's grid {data.shape[1:]}, got {seg.shape}"
        )
    bbox = [[int(a), int(b)] for a, b in nonzero_bounding_box(torch.from_numpy(data))]
    slicer = tuple(slice(a, b) for a, b in bbox)
    cropped = data[(slice(None), *slicer)]
    mask = filled_nonzero_mask(cropped)
    if seg is not None:
        out = np.array(seg[(slice(None), *slicer)], dtype=np.int16 if seg.max(initial=0) > 127 else np.int8)
        out[(out == 0) & ~mask[None]] = nonzero_label
    else:
        out = np.where(mask, np.int8(0), np.int8(nonzero_label))[None]
    return cropped, out, bbox
