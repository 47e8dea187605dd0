"""Low-level ops. One public function per op; each picks a backend (reference | cpu | cuda | triton).

The pure-torch reference of each op is its definition; every other backend is tested against it.
"""

from __future__ import annotations

from fastpanc.ops._backend import BackendUnavailableError, slow_paths_taken
from fastpanc.ops.aggregate import (
    accumulate,
    accumulate_reference,
    argmax_labels,
    argmax_labels_reference,
    finalize,
    finalize_reference,
)
from fastpanc.ops.conv_narrow import conv3d_narrow, conv3d_narrow_reference
from fastpanc.ops.crop import (
    bounding_box,
    bounding_box_reference,
    crop_pad,
    crop_pad_reference,
    nonzero_bounding_box,
    paste,
    paste_reference,
)
from fastpanc.ops.norm_act import instance_norm_act, instance_norm_act_reference
from fastpanc.ops.normalize import ct_normalize, ct_normalize_reference
from fastpanc.ops.pool import avg_pool_down, avg_pool_down_reference
from fastpanc.ops.resample import compute_new_shape, resample, resample_reference, separate_z_axis
from fastpanc.ops.resample_labels import resample_labels, resample_labels_reference
from fastpanc.ops.sliding_window import gaussian_map, sliding_window_starts, window_slices
from fastpanc.ops.upsample import (
    depth_to_space_cat,
    depth_to_space_cat_reference,
    transposed_conv_as_1x1_weight,
)
from fastpanc.ops.winograd import conv3d_same, conv3d_same_reference

__all__ = [
    "argmax_labels",
    "argmax_labels_reference",
    "BackendUnavailableError",
    "slow_paths_taken",
    "ct_normalize",
    "ct_normalize_reference",
    "instance_norm_act",
    "instance_norm_act_reference",
    "avg_pool_down",
    "avg_pool_down_reference",
    "conv3d_same",
    "conv3d_same_reference",
    "conv3d_narrow",
    "conv3d_narrow_reference",
    "depth_to_space_cat",
    "depth_to_space_cat_reference",
    "transposed_conv_as_1x1_weight",
    "resample",
    "resample_reference",
    "resample_labels",
    "resample_labels_reference",
    "separate_z_axis",
    "compute_new_shape",
    "bounding_box",
    "bounding_box_reference",
    "nonzero_bounding_box",
    "crop_pad",
    "crop_pad_reference",
    "paste",
    "paste_reference",
    "sliding_window_starts",
    "window_slices",
    "gaussian_map",
    "accumulate",
    "accumulate_reference",
    "finalize",
    "finalize_reference",
]
