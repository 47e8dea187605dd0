"""nnU-Net v2's ResEnc M planner rules: target spacing, and per configuration the patch size, batch size and
``ResidualEncoderUNet`` topology that fit the memory target (``nnUNetPlannerResEncM.get_plans_for_configuration``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from fastpanc.data.topology import pool_and_conv_props, resenc_feature_map_size

ANISO_THRESHOLD = 3.0
# nnUNetPlannerResEncM: reference feature-map voxels that fit the 8 GB target with batch size 2 (3d) / 12 (2d)
REFERENCE_VAL_3D = 680_000_000
REFERENCE_VAL_2D = 135_000_000
REFERENCE_GB = 8.0
REFERENCE_BS_3D = 2
REFERENCE_BS_2D = 12
BASE_FEATURES = 32
MAX_FEATURES_3D = 320
MAX_FEATURES_2D = 512
MIN_FEATURE_MAP_EDGE = 4
MIN_BATCH_SIZE = 2
MAX_DATASET_COVERED = 1.0
BLOCKS_PER_STAGE_ENCODER = (1, 3, 4, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6)
BLOCKS_PER_STAGE_DECODER = (1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1)
LOWRES_CREATION_THRESHOLD = 0.25
LOWRES_SPACING_INCREASE = 1.03
NETWORK_CLASS = "dynamic_network_architectures.architectures.unet.ResidualEncoderUNet"
DEFAULT_LABELS = {"background": 0, "pancreas": 1, "lesion": 2}
DEFAULT_CHANNELS = {"0": "CT"}

# nnU-Net's channel name -> normalisation scheme, and whether the scheme keeps voxels outside the mask at zero
_NORMALIZATION = {
    "ct": ("CTNormalization", False),
    "nonorm": ("NoNormalization", False),
    "zscore": ("ZScoreNormalization", True),
    "rescale_to_0_1": ("RescaleTo01Normalization", False),
    "rgb_to_0_1": ("RGBTo01Normalization", False),
}


@dataclass(frozen=True)
class PlanSettings:
    """What the planner does not read from the fingerprint.

    Attributes:
        gpu_memory_gb: the memory target; ResEnc M is 8. Smaller targets give smaller patches (CPU demos).
        plans_name: ``plans_name`` written into the plans.
        num_subtypes, head, head_hidden, subtype_names: fastpanc's classification head (``"fastpanc"`` section).
        target_spacing: ``(z, y, x)`` mm replacing the fingerprint's target spacing (nnU-Net's
            ``-overwrite_target_spacing``); None: nnU-Net's rule.
    """

    gpu_memory_gb: float = 8.0
    plans_name: str = "nnUNetResEncUNetMPlans"
    num_subtypes: int = 3
    head: str = "attention"
    head_hidden: int = 128
    subtype_names: tuple[str, ...] = field(default=("0", "1", "2"))
    target_spacing: tuple[float, float, float] | None = None

    def __post_init__(self) -> None:
        if not self.gpu_memory_gb > 0:
            raise ValueError(f"gpu_memory_gb must be > 0, got {self.gpu_memory_gb}")
        if self.target_spacing is not None and (
            len(self.target_spacing) != 3 or not all(s > 0 for s in self.target_spacing)
        ):
            raise ValueError(f"target_spacing must be three positive mm (z, y, x), got {self.target_spacing}")
        if self.head not in ("attention", "pool"):
            raise ValueError(f"head must be 'attention' or 'pool', got {self.head!r}")
        if self.num_subtypes < 1 or len(self.subtype_names) != self.num_subtypes:
            raise ValueError(f"expected {self.num_subtypes} subtype names, got {list(self.subtype_names)}")
        if self.head_hidden < 1:
            raise ValueError(f"head_hidden must be >= 1, got {self.head_hidden}")

    def fastpanc_section(self) -> dict[str, Any]:
        d = asdict(self)
        return {
            "num_subtypes": d["num_subtypes"],
            "head": d["head"],
            "head_hidden": d["head_hidden"],
            "subtype_names": list(d["subtype_names"]),
        }


def compute_new_shape(
    shape: Sequence[int], spacing: Sequence[float], new_spacing: Sequence[float]
) -> np.ndarray:
    """nnU-Net's ``compute_new_shape``: ``round(old_spacing / new_spacing * old_shape)`` per axis."""
    return np.array([int(round(s / n * k)) for s, n, k in zip(spacing, new_spacing, shape)])


def target_spacing(spacings: np.ndarray, shapes: np.ndarray) -> np.ndarray:
    """Median spacing, except on a strongly anisotropic axis with few voxels: its 10th percentile there."""
    target = np.percentile(spacings, 50, 0)
    target_size = np.percentile(shapes, 50, 0)
    worst = int(np.argmax(target))
    others = [i for i in range(len(target)) if i != worst]
    other_spacings = [target[i] for i in others]
    other_sizes = [target_size[i] for i in others]
    aniso_spacing = target[worst] > ANISO_THRESHOLD * max(other_spacings)
    aniso_voxels = target_size[worst] * ANISO_THRESHOLD < min(other_sizes)
    if aniso_spacing and aniso_voxels:
        t = np.percentile(spacings[:, worst], 10)
        if t < max(other_spacings):
            t = max(max(other_spacings), t) + 1e-5
        target[worst] = t
    return target


def _features(n_stages: int, max_features: int) -> list[int]:
    return [min(max_features, BASE_FEATURES * 2**i) for i in range(n_stages)]


def resenc_architecture(
    features_per_stage: list[int],
    kernel_sizes: list[list[int]],
    strides: list[list[int]],
    n_blocks_per_stage: list[int],
    n_conv_per_stage_decoder: list[int],
    ndim: int = 3,
) -> dict[str, Any]:
    """The ``architecture`` entry of an nnU-Net v2 plans configuration for a ResidualEncoderUNet
    (InstanceNorm with affine, LeakyReLU, conv bias, no dropout), as nnU-Net's ResEnc planners write it."""
    if ndim not in (2, 3):
        raise ValueError(f"ndim must be 2 or 3, got {ndim}")
    n = len(features_per_stage)
    if not (
        len(kernel_sizes) == len(strides) == len(n_blocks_per_stage) == n
        and len(n_conv_per_stage_decoder) == n - 1
    ):
        raise ValueError(
            f"per-stage lists must have {n} entries (decoder: {n - 1}); got kernels {len(kernel_sizes)}, "
            f"strides {len(strides)}, blocks {len(n_blocks_per_stage)}, decoder {len(n_conv_per_stage_decoder)}"
        )
    return {
        "network_class_name": NETWORK_CLASS,
        "arch_kwargs": {
            "n_stages": n,
            "features_per_stage": [int(f) for f in features_per_stage],
            "conv_op": f"torch.nn.modules.conv.Conv{ndim}d",
            "kernel_sizes": [list(k) for k in kernel_sizes],
            "strides": [list(s) for s in strides],
            "n_blocks_per_stage": [int(b) for b in n_blocks_per_stage],
            "n_conv_per_stage_decoder": [int(c) for c in n_conv_per_stage_decoder],
            "conv_bias": True,
            "norm_op": f"torch.nn.modules.instancenorm.InstanceNorm{ndim}d",
            "norm_op_kwargs": {"eps": 1e-05, "affine": True},
            "dropout_op": None,
            "dropout_op_kwargs": None,
            "nonlin": "torch.nn.LeakyReLU",
            "nonlin_kwargs": {"inplace": True},
        },
        "_kw_requires_import": ["conv_op", "norm_op", "dropout_op", "nonlin"],
    }


def _arch(topo, ndim: int) -> dict[str, Any]:
    n = topo.n_stages
    return resenc_architecture(
        _features(n, MAX_FEATURES_3D if ndim == 3 else MAX_FEATURES_2D),
        topo.kernel_sizes,
        topo.strides,
        list(BLOCKS_PER_STAGE_ENCODER[:n]),
        list(BLOCKS_PER_STAGE_DECODER[: n - 1]),
        ndim,
    )


class Planner:
    """State of one planning run (dataset facts, settings and the VRAM-estimate cache)."""

    def __init__(
        self, fingerprint: dict[str, Any], dataset_json: dict[str, Any], settings: PlanSettings
    ) -> None:
        for key in (
            "spacings",
            "shapes_after_crop",
            "foreground_intensity_properties_per_channel",
            "median_relative_size_after_cropping",
        ):
            if key not in fingerprint:
                raise ValueError(
                    f"dataset fingerprint lacks {key!r}; expected nnU-Net v2's dataset_fingerprint.json "
                    "schema (write one with `fastpanc plan DATASET`)"
                )
        self.fp = fingerprint
        self.settings = settings
        self.channels = dataset_json.get("channel_names", dataset_json.get("modality", DEFAULT_CHANNELS))
        self.labels = dataset_json.get("labels", DEFAULT_LABELS)
        self.num_training = int(dataset_json.get("numTraining", len(fingerprint["spacings"])))
        self.spacings = np.vstack([np.asarray(s, dtype=np.float64) for s in fingerprint["spacings"]])
        self.shapes = np.vstack([np.asarray(s, dtype=np.float64) for s in fingerprint["shapes_after_crop"]])
        if self.spacings.shape != self.shapes.shape or self.spacings.shape[1] != 3:
            raise ValueError(
                f"fingerprint spacings {self.spacings.shape} and shapes {self.shapes.shape} must both "
                "be (cases, 3)"
            )
        self._cache: dict[str, int] = {}

    def normalization(self) -> tuple[list[str], list[bool]]:
        schemes = [
            _NORMALIZATION.get(str(v).casefold(), _NORMALIZATION["zscore"]) for v in self.channels.values()
        ]
        use_mask = self.fp["median_relative_size_after_cropping"] < 3 / 4
        return [s[0] for s in schemes], [bool(s[1]) if use_mask else False for s in schemes]

    def _estimate(self, topo, ndim: int) -> int:
        key = f"{topo.patch_size}_{topo.strides}"
        if key not in self._cache:
            a = _arch(topo, ndim)["arch_kwargs"]
            self._cache[key] = resenc_feature_map_size(
                topo.patch_size,
                len(self.channels),
                len(self.labels),
                a["features_per_stage"],
                a["strides"],
                a["n_blocks_per_stage"],
                a["n_conv_per_stage_decoder"],
            )
        return self._cache[key]

    def configuration(
        self, spacing: np.ndarray, median_shape: Sequence[float], data_identifier: str, approx_voxels: float
    ) -> dict[str, Any]:
        """Patch size, batch size and topology for one configuration (``get_plans_for_configuration``)."""
        ndim = len(spacing)
        if not all(s > 0 for s in spacing):
            raise ValueError(f"spacing must be > 0, got {list(spacing)}")
        inv = 1 / np.asarray(spacing, dtype=np.float64)
        edge = 256**3 if ndim == 3 else 2048**2
        initial = [round(i) for i in inv * (edge / np.prod(inv)) ** (1 / ndim)]
        initial = [min(i, j) for i, j in zip(initial, median_shape[:ndim])]
        topo = pool_and_conv_props(spacing, initial, MIN_FEATURE_MAP_EDGE)
        ref_val = REFERENCE_VAL_3D if ndim == 3 else REFERENCE_VAL_2D
        reference = ref_val * (self.settings.gpu_memory_gb / REFERENCE_GB)
        estimate = self._estimate(topo, ndim)
        while estimate > reference:
            # shrink the axis that is largest relative to the median shape, by one step of its divisibility
            axis = int(np.argsort([i / j for i, j in zip(topo.patch_size, median_shape[:ndim])])[-1])
            patch = list(topo.patch_size)
            tmp = list(patch)
            tmp[axis] -= topo.shape_must_be_divisible_by[axis]
            patch[axis] -= pool_and_conv_props(spacing, tmp, MIN_FEATURE_MAP_EDGE).shape_must_be_divisible_by[
                axis
            ]
            if patch[axis] <= 0:
                raise ValueError(
                    f"no patch size fits a {self.settings.gpu_memory_gb} GB target for spacing "
                    f"{list(spacing)}; raise --gpu-memory-gb"
                )
            topo = pool_and_conv_props(spacing, patch, MIN_FEATURE_MAP_EDGE)
            estimate = self._estimate(topo, ndim)
        ref_bs = REFERENCE_BS_3D if ndim == 3 else REFERENCE_BS_2D
        batch_size = round(reference / estimate * ref_bs)
        bs_cap = round(approx_voxels * MAX_DATASET_COVERED / np.prod(topo.patch_size, dtype=np.float64))
        batch_size = max(min(batch_size, bs_cap), MIN_BATCH_SIZE)
        schemes, use_mask = self.normalization()
        resample = {"is_seg": False, "order": 3, "order_z": 0, "force_separate_z": None}
        return {
            "data_identifier": data_identifier,
            "preprocessor_name": "DefaultPreprocessor",
            "batch_size": int(batch_size),
            "patch_size": [int(p) for p in topo.patch_size],
            "median_image_size_in_voxels": [float(m) for m in median_shape],
            "spacing": [float(s) for s in spacing],
            "normalization_schemes": schemes,
            "use_mask_for_norm": use_mask,
            "resampling_fn_data": "resample_data_or_seg_to_shape",
            "resampling_fn_seg": "resample_data_or_seg_to_shape",
            "resampling_fn_data_kwargs": dict(resample),
            "resampling_fn_seg_kwargs": {**resample, "is_seg": True, "order": 1},
            "resampling_fn_probabilities": "resample_data_or_seg_to_shape",
            "resampling_fn_probabilities_kwargs": {**resample, "order": 1},
            "architecture": _arch(topo, ndim),
        }
