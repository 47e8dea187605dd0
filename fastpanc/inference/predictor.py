"""``Predictor``: load a model folder once, then predict cases from files or from arrays with spacing."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from fastpanc.inference.config import PredictConfig
from fastpanc.inference.export import export_labels, export_prediction
from fastpanc.inference.model_folder import ModelFolder, load_model_folder
from fastpanc.inference.prepare import Prepared, prepare
from fastpanc.inference.roi import find_roi
from fastpanc.inference.sliding_window import predict_logits

log = logging.getLogger("fastpanc.inference")

STAGES = ("read", "preprocess", "network", "aggregate", "export", "write")


@dataclass
class CaseResult:
    """One predicted case.

    ``labels``: ``(Z, Y, X)`` uint8 on the input grid. ``probabilities``: ``(K, Z, Y, X)`` float32 or None.
    ``subtype_probs``: ``(S,)`` or None for plain segmentation models; ``subtype`` its argmax.
    ``timings``: seconds per stage (see ``STAGES``).
    """

    labels: np.ndarray
    probabilities: np.ndarray | None
    subtype_probs: np.ndarray | None
    subtype_weighting: str | None
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def subtype(self) -> int | None:
        return None if self.subtype_probs is None else int(np.argmax(self.subtype_probs))


def cpu_has_bf16() -> bool:
    """Whether this CPU computes bfloat16 natively (AVX512-BF16 or AMX); otherwise bf16 would be emulated."""
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(getattr(torch.cpu, c, lambda: False)() for c in checks)


def resolve_device(device: str | torch.device) -> torch.device:
    """``auto`` -> cuda when available else cpu (only the CLI passes ``auto``)."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} was asked for but no CUDA GPU is available; use --device cpu")
    if dev.type not in ("cpu", "cuda"):
        raise ValueError(f"device must be auto, cpu, cuda or cuda:N, got {device!r}")
    return dev


class Predictor:
    """Predict masks (and lesion subtypes for multitask models) with one or several folds of a model folder.

    Example::

        p = Predictor("model_dir", device="cpu", config=PredictConfig(mode="fast"))
        result = p.predict_array(image, spacing=(2.0, 0.7, 0.7))  # image (Z, Y, X) or (C, Z, Y, X)
    """

    def __init__(
        self,
        model_dir: str | Path,
        folds: Sequence[int | str] | None = None,
        checkpoint: str | None = None,
        device: str | torch.device = "cpu",
        config: PredictConfig | None = None,
    ) -> None:
        self.device = resolve_device(device)
        asked = config or PredictConfig()
        self.config = asked.resolved(self.device.type)
        self.model: ModelFolder = load_model_folder(
            model_dir,
            None if folds is None else [str(f) for f in folds],
            checkpoint,
            self.config.configuration,
        )
        if self.config.fused_inference and self.device.type != "cpu":
            log.warning(
                "fused_inference asked for on %s: not measured on GPUs yet (the default there is off); the norm "
                "pass runs in Triton, pooling and upsampling as their torch reference ops",
                self.device,
            )
        self.networks = []
        for state in self.model.states:  # weights are loaded once, one network per fold
            net = network_with_weights(self.model.build_network, state, self.model.path)
            if self.config.fused_inference:
                if hasattr(net, "fuse_inference"):
                    net.fuse_inference("auto", channels_last=bool(self.config.channels_last))
                elif asked.fused_inference:
                    raise ValueError(
                        f"fused_inference asked for, but {type(net).__name__} (from {self.model.path}) is not a network "
                        "fastpanc builds; predict with PredictConfig(fused_inference=False)"
                    )
                else:
                    log.info("%s: %s runs with torch's own norm modules", self.model.path, type(net).__name__)
            self.networks.append(net.to(self.device).eval())
        self.mirror_axes = self.model.mirror_axes if self.config.tta else None
        if self.config.tta and self.model.mirror_axes is None:
            log.warning(
                "TTA asked for, but the checkpoint allows no mirroring axes: predicting without mirroring"
            )
        self.autocast = self._autocast_dtype()
        # exact: nnU-Net's float16 accumulators (their rounding decides near-ties); fast: float32
        self.accumulate_dtype = torch.float16 if self.config.mode == "exact" else torch.float32
        if self.device.type == "cuda":
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True
            torch.backends.cudnn.benchmark = True
        strides = np.array(self.model.strides)
        self.divisor = tuple(int(v) for v in strides.prod(0))
        if not self.model.multitask:
            log.debug("%s is a plain segmentation model: no subtype output", self.model.path)

    def _autocast_dtype(self) -> torch.dtype | None:
        if self.device.type == "cuda":
            if self.config.mode == "exact":
                return torch.float16  # nnUNetPredictor runs under torch.autocast("cuda") (float16)
            if self.config.autocast:
                return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
            return None
        if self.config.autocast:
            if cpu_has_bf16():
                return torch.bfloat16
            log.warning(
                "bfloat16 autocast asked for, but this CPU has no native bf16 (AVX512-BF16/AMX): "
                "running in float32"
            )
        return None

    @property
    def multitask(self) -> bool:
        return self.model.multitask

    def preprocess(self, image: np.ndarray, spacing: Sequence[float]) -> Prepared:
        """Crop, normalise and resample ``image`` ``(Z, Y, X)`` or ``(C, Z, Y, X)``."""
        image = np.asarray(image)
        if image.ndim == 3:
            image = image[None]
        if image.ndim != 4 or image.shape[0] != self.model.num_input_channels:
            raise ValueError(
                f"expected an image (Z, Y, X) or ({self.model.num_input_channels}, Z, Y, X) for this "
                f"model, got shape {image.shape}"
            )
        if len(spacing) != 3 or not all(float(s) > 0 for s in spacing):
            raise ValueError(f"spacing must be 3 positive values (z, y, x) in mm, got {spacing}")
        if np.issubdtype(image.dtype, np.floating):
            bad = int(image.size - np.count_nonzero(np.isfinite(image)))
            if bad:
                raise ValueError(
                    f"the image has {bad} NaN or infinite voxel(s); expected finite intensities. Replace "
                    "them (for example with the lowest HU of the scan) and predict again"
                )
        return prepare(image, spacing, self.model.plans, self.config.configuration, self.device)

    @property
    def fused_labels(self) -> bool:
        """Whether the argmax is fused into the aggregation (``finalize``): argmax-then-nearest export of one
        fold in float32 accumulation, without probabilities (the logits are never needed)."""
        cfg = self.config
        return (
            cfg.export == "argmax_nearest"
            and not cfg.save_probabilities
            and len(self.networks) == 1
            and self.accumulate_dtype == torch.float32
        )

    def _run_network(
        self, data: torch.Tensor, timings: dict[str, float], output: str = "logits"
    ) -> tuple[torch.Tensor, np.ndarray | None, str | None]:
        """Ensemble of the folds over ``data`` ``(C, z, y, x)``: mean logits (or, with ``output="labels"`` and
        one fold, their argmax as uint8), and the mean subtype probabilities."""
        cfg = self.config
        if output == "labels" and len(self.networks) != 1:
            raise ValueError("labels straight from the aggregation need exactly one fold")
        logits, subtype, weighting = None, None, None
        for net in self.networks:
            out = predict_logits(
                net,
                data,
                self.model.patch_size,
                cfg.step,
                self.mirror_axes,
                cfg.batch_size,
                device=self.device,
                autocast=self.autocast,
                padding=cfg.padding,
                divisor=self.divisor,
                timings=timings,
                accumulate_dtype=self.accumulate_dtype,
                output=output,
                subtype_from=cfg.subtype_from,
            )
            if output == "labels":
                logits = out.labels
            else:
                logits = out.logits if logits is None else logits.add_(out.logits)
            if out.subtype_probs is not None:
                subtype = out.subtype_probs if subtype is None else subtype + out.subtype_probs
                weighting = out.subtype_weighting
        assert logits is not None
        if len(self.networks) > 1:
            logits /= len(self.networks)
            if subtype is not None:
                subtype = subtype / len(self.networks)
        return logits, (None if subtype is None else subtype.numpy()), weighting

    @torch.inference_mode()
    def predict_prepared(self, prep: Prepared, timings: dict[str, float] | None = None) -> CaseResult:
        """Network, aggregation and export of a preprocessed case."""
        timings = {} if timings is None else timings
        output = "labels" if self.fused_labels else "logits"
        if self.config.roi:
            region = find_roi(self, prep.data, timings)
            result, subtype, weighting = self._roi_run(prep.data, region, timings, output)
        else:
            result, subtype, weighting = self._run_network(prep.data, timings, output)
        t0 = time.perf_counter()
        if output == "labels":
            labels, probs = export_labels(result, prep), None
        else:
            labels, probs = export_prediction(
                result, prep, self.model.config, self.config.export, self.config.save_probabilities
            )
        timings["export"] = timings.get("export", 0.0) + time.perf_counter() - t0
        return CaseResult(labels, probs, subtype, weighting, timings)

    def _roi_run(
        self, data: torch.Tensor, region: tuple[slice, ...] | None, timings: dict[str, float], output: str
    ):
        if region is None:
            return self._run_network(data, timings, output)
        inner, subtype, weighting = self._run_network(data[(slice(None), *region)], timings, output)
        if output == "labels":  # background outside the region of interest
            labels = torch.zeros(data.shape[1:], dtype=inner.dtype, device=inner.device)
            labels[region] = inner
            return labels, subtype, weighting
        logits = torch.full(
            (inner.shape[0], *data.shape[1:]), ROI_OUTSIDE_LOGIT, dtype=inner.dtype, device=inner.device
        )
        logits[0] = 0.0  # background outside the region of interest
        logits[(slice(None), *region)] = inner
        return logits, subtype, weighting

    def predict_array(self, image: np.ndarray, spacing: Sequence[float]) -> CaseResult:
        """Predict an image ``(Z, Y, X)`` or ``(C, Z, Y, X)`` with voxel ``spacing`` ``(z, y, x)`` in mm."""
        timings: dict[str, float] = {}
        t0 = time.perf_counter()
        prep = self.preprocess(image, spacing)
        timings["preprocess"] = time.perf_counter() - t0
        return self.predict_prepared(prep, timings)

    def predict_files(self, files: Sequence[str | Path]) -> tuple[CaseResult, object]:
        """Predict one case from its channel files; returns ``(result, geometry)`` (``fastpanc.data.io.Geometry``)."""
        from fastpanc.data.io import read_case

        t0 = time.perf_counter()
        image, geometry = read_case([Path(f) for f in files])
        read_s = time.perf_counter() - t0
        result = self.predict_array(image, geometry.spacing)
        result.timings["read"] = read_s
        return result, geometry


# foreground logits outside the region of interest: softmax gives them ~1e-13 next to background's 0
ROI_OUTSIDE_LOGIT = -30.0


def network_with_weights(
    build: Callable[[], torch.nn.Module], state: Mapping[str, torch.Tensor], source: object = "the checkpoint"
) -> torch.nn.Module:
    """``build()`` on the meta device, then the checkpoint's ``state`` as its tensors.

    Building on a real device would first fill every weight with its random initialisation (He normal for each
    convolution: 1.3 s for ResEnc M on 2 CPU cores, about a fifth of a one-image prediction), only to overwrite it
    with the checkpoint. On the meta device nothing is allocated or drawn; ``load_state_dict(assign=True)`` then
    makes the checkpoint's tensors the module's (strict: every parameter and persistent buffer must be in it).
    Floating-point weights keep the module's dtype, as a copy into it would. Errors name ``source``: torch's for
    missing, unexpected or mis-shaped weights, and ours for a tensor the state does not provide (a non-persistent
    buffer).
    """
    with torch.device("meta"):
        net = build()
    dtypes = {k: v.dtype for k, v in net.state_dict().items()}
    state = {
        k: v.to(dtypes[k]) if k in dtypes and v.is_floating_point() and dtypes[k].is_floating_point else v
        for k, v in state.items()
    }
    try:
        net.load_state_dict(state, strict=True, assign=True)
    except RuntimeError as e:  # missing / unexpected keys, shape mismatches: say whose checkpoint
        raise RuntimeError(f"{source}: {e}") from e
    unset = [n for n, t in [*net.named_parameters(), *net.named_buffers()] if t.is_meta]
    if unset:
        raise RuntimeError(
            f"{source}: the network has tensors its checkpoint does not set ({', '.join(unset[:5])}"
            f"{', ...' if len(unset) > 5 else ''}); fastpanc cannot predict with it"
        )
    return net
