"""The ResEnc M experiment plan (nnU-Net v2's ``nnUNetPlannerResEncM``), reimplemented without nnunetv2.

From a dataset fingerprint (see :mod:`fastpanc.data.fingerprint`) this derives the target spacing, the
transpose, the 2d / 3d_fullres (/ 3d_lowres) configurations with patch size, batch size and network topology
from the planner's VRAM estimate, and writes them as ``plans.json`` in nnU-Net v2's schema, so nnunetv2's
``PlansManager`` reads it. fastpanc's own settings (the subtype head) sit under the top-level key ``"fastpanc"``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from fastpanc.data.plan_rules import (
    LOWRES_CREATION_THRESHOLD,
    LOWRES_SPACING_INCREASE,
    Planner,
    PlanSettings,
    compute_new_shape,
    target_spacing,
)
from fastpanc.data.raw_dataset import load_json_file

log = logging.getLogger(__name__)

__all__ = ["PlanSettings", "plan_from_fingerprint", "plan_command", "write_json_atomic"]


def plan_from_fingerprint(
    fingerprint: dict[str, Any],
    dataset_json: dict[str, Any] | None = None,
    settings: PlanSettings | None = None,
    dataset_name: str = "fastpanc",
) -> dict[str, Any]:
    """The ResEnc M plans for a fingerprint, as the dict nnU-Net v2 writes to ``nnUNetResEncUNetMPlans.json``.

    Args:
        fingerprint: nnU-Net v2 ``dataset_fingerprint.json`` content.
        dataset_json: the raw dataset's ``dataset.json`` (channel names, labels, numTraining); when None,
            fastpanc's dataset (one CT channel, background/pancreas/lesion, one case per fingerprint entry).
        settings: memory target and head settings.
        dataset_name: written as ``dataset_name``.
    """
    settings = settings or PlanSettings()
    p = Planner(fingerprint, dataset_json or {}, settings)
    if settings.target_spacing is not None:
        full = np.array(settings.target_spacing, dtype=np.float64)
    else:
        full = target_spacing(p.spacings, p.shapes)
    forward = [int(np.argmax(full))] + [i for i in range(3) if i != int(np.argmax(full))]
    backward = [forward.index(i) for i in range(3)]
    full_t = full[forward]
    new_shapes = [compute_new_shape(k, s, full) for s, k in zip(p.spacings, p.shapes)]
    median_t = np.median(new_shapes, 0)[forward]
    approx = float(np.prod(median_t, dtype=np.float64) * p.num_training)
    plans_name = settings.plans_name
    configs: dict[str, Any] = {}
    fullres = lowres = None
    if median_t[0] != 1:
        fullres = p.configuration(full_t, median_t, "nnUNetPlans_3d_fullres", approx)
        median_voxels = np.prod(median_t, dtype=np.float64)
        patch_voxels = np.prod(fullres["patch_size"], dtype=np.float64)
        low_spacing = np.array(full_t, dtype=np.float64)
        while patch_voxels / median_voxels < LOWRES_CREATION_THRESHOLD:
            biggest = max(low_spacing)
            if np.any(biggest / low_spacing > 2):
                low_spacing[biggest / low_spacing > 2] *= LOWRES_SPACING_INCREASE
            else:
                low_spacing *= LOWRES_SPACING_INCREASE
            median_voxels = np.prod(full_t / low_spacing * median_t, dtype=np.float64)
            low_shape = tuple(round(i) for i in full_t / low_spacing * median_t)
            lowres = p.configuration(
                low_spacing, low_shape, f"{plans_name}_3d_lowres", float(median_voxels * p.num_training)
            )
            patch_voxels = np.prod(lowres["patch_size"], dtype=np.int64)
            log.info("3d_lowres candidate: spacing %s, patch %s", low_spacing.tolist(), lowres["patch_size"])
        if lowres is not None and np.prod(median_t, dtype=np.float64) / median_voxels < 2:
            log.info("dropping 3d_lowres: its image size is too close to 3d_fullres")
            lowres = None
        fullres["batch_dice"] = lowres is not None
        if lowres is not None:
            lowres["batch_dice"] = False
    configs["2d"] = p.configuration(full_t[1:], median_t[1:], "nnUNetPlans_2d", approx)
    configs["2d"]["batch_dice"] = True
    if lowres is not None:
        configs["3d_lowres"] = (
            {**lowres, "next_stage": "3d_cascade_fullres"} if fullres is not None else lowres
        )
    if fullres is not None:
        configs["3d_fullres"] = fullres
        if lowres is not None:
            configs["3d_cascade_fullres"] = {"inherits_from": "3d_fullres", "previous_stage": "3d_lowres"}
    return {
        "dataset_name": dataset_name,
        "plans_name": plans_name,
        "original_median_spacing_after_transp": [float(i) for i in np.median(p.spacings, 0)[forward]],
        "original_median_shape_after_transp": [int(round(i)) for i in np.median(p.shapes, 0)[forward]],
        "image_reader_writer": "SimpleITKIO",
        "transpose_forward": forward,
        "transpose_backward": backward,
        "configurations": configs,
        "experiment_planner_used": "nnUNetPlannerResEncM",
        "label_manager": "LabelManager",
        "foreground_intensity_properties_per_channel": fingerprint[
            "foreground_intensity_properties_per_channel"
        ],
        "fastpanc": settings.fastpanc_section(),
    }


def write_json_atomic(obj: Any, path: Path) -> None:
    """Write ``obj`` as indented JSON through a temporary file and ``os.replace``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(obj, indent=4) + "\n")
    os.replace(tmp, path)


def plan_command(args: argparse.Namespace) -> int:
    """``fastpanc plan DATASET`` or ``fastpanc plan --from-fingerprint FILE -o plans.json``."""
    from fastpanc.data.fingerprint import extract_fingerprint

    spacing = tuple(args.target_spacing) if args.target_spacing else None
    settings = PlanSettings(gpu_memory_gb=args.gpu_memory_gb, target_spacing=spacing)
    if spacing is not None:
        log.warning(
            "target spacing %s mm given: the plan is not nnU-Net's ResEnc M for this dataset", spacing
        )
    if args.gpu_memory_gb != 8.0:
        log.warning(
            "planning for %.3g GB instead of ResEnc M's 8 GB: the plan is not nnU-Net's ResEnc M",
            args.gpu_memory_gb,
        )
    dataset = Path(args.dataset) if args.dataset else None
    if dataset is None and not args.from_fingerprint:
        raise ValueError("give a DATASET folder or --from-fingerprint FILE (with -o plans.json)")
    if dataset is None and not args.output:
        raise ValueError("--from-fingerprint without DATASET needs -o/--output plans.json")
    output = Path(args.output) if args.output else dataset / "plans.json"
    dataset_json = load_json_file(dataset / "dataset.json", "dataset.json") if dataset else None
    if args.from_fingerprint:
        fingerprint = load_json_file(Path(args.from_fingerprint), "dataset fingerprint")
        name = dataset.name if dataset else Path(args.from_fingerprint).resolve().parent.name
    else:
        fingerprint = extract_fingerprint(dataset, workers=args.workers)
        write_json_atomic(fingerprint, output.parent / "dataset_fingerprint.json")
        log.info("wrote %s", output.parent / "dataset_fingerprint.json")
        name = dataset.name
    plans = plan_from_fingerprint(fingerprint, dataset_json, settings, dataset_name=name)
    write_json_atomic(plans, output)
    full = plans["configurations"].get("3d_fullres", {})
    print(
        f"wrote {output}: spacing {full.get('spacing')}, patch {full.get('patch_size')}, "
        f"batch {full.get('batch_size')}"
    )
    return 0
