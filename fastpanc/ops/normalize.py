"""CT normalisation (nnU-Net's ``CTNormalization``): clip to [lo, hi], subtract mean, divide by std, cast."""

from __future__ import annotations

import torch

from fastpanc.ops import _backend as B

_IN_DTYPES = B.IMAGE_DTYPES
_OUT_DTYPES = (torch.float32, torch.float16, torch.bfloat16)


def ct_normalize_reference(
    x: torch.Tensor, lo: float, hi: float, mean: float, std: float, out_dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """The definition: ``((clip(x, lo, hi) - mean) / std).to(out_dtype)``, computed in float32."""
    y = x.to(torch.float32).clamp(lo, hi)
    return ((y - mean) * (1.0 / std)).to(out_dtype)


def ct_normalize(
    x: torch.Tensor,
    lo: float,
    hi: float,
    mean: float,
    std: float,
    out_dtype: torch.dtype = torch.float32,
    backend: str = "auto",
    out: torch.Tensor | None = None,
) -> torch.Tensor:
    """Normalise a CT volume in one pass.

    Args:
        x: ``(C, Z, Y, X)`` (or ``(Z, Y, X)``), any strides, float or integer dtype.
        lo, hi: clipping window (nnU-Net: the 0.5 and 99.5 foreground percentiles).
        mean, std: foreground mean and standard deviation; ``std`` must be > 0.
        out_dtype: float32, float16 or bfloat16.
        backend: ``auto``, ``reference``, ``cpu`` (C++/OpenMP), ``cuda`` or ``triton``.
        out: optional contiguous tensor of ``x``'s shape, ``out_dtype`` and device to write into; it may
            be ``x`` itself (in place, as nnU-Net's ``CTNormalization`` works), but must not otherwise
            overlap ``x``.

    Returns:
        ``out``, or a new contiguous tensor of ``x``'s shape and ``out_dtype`` on ``x``'s device.
    """
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"ct_normalize: expected a torch.Tensor, got {type(x).__name__}")
    if out_dtype not in _OUT_DTYPES:
        raise ValueError(f"ct_normalize: out_dtype must be one of {_OUT_DTYPES}, got {out_dtype}")
    if x.dtype not in _IN_DTYPES:
        raise ValueError(
            f"ct_normalize: input dtype {x.dtype} is not supported; expected one of {_IN_DTYPES}"
        )
    if not (std > 0) or std != std:
        raise ValueError(f"ct_normalize: std must be a positive number, got {std}")
    if not lo <= hi:
        raise ValueError(f"ct_normalize: expected lo <= hi, got lo={lo}, hi={hi}")
    if x.dim() > 4 or x.dim() < 1:
        raise ValueError(f"ct_normalize: expected 1 to 4 dims (C, Z, Y, X), got shape {tuple(x.shape)}")
    if out is not None:
        _check_out(x, out, out_dtype)

    name = B.choose(
        "ct_normalize",
        backend,
        {
            "reference": lambda: None,
            "cpu": lambda: B.cpu_reason(x, dtypes=_IN_DTYPES),
            "cuda": lambda: B.cuda_reason(x, dtypes=_IN_DTYPES),
            "triton": lambda: B.triton_reason(x),
        },
        B.auto_order(x.device, cpu=["cpu"], cuda=["triton", "cuda"]),
    )
    if name == "reference":
        y = ct_normalize_reference(x, lo, hi, mean, std, out_dtype)
        return y if out is None else out.copy_(y)
    if name == "triton":
        from fastpanc.kernels.normalize import ct_normalize_triton

        return ct_normalize_triton(x, lo, hi, mean, std, out_dtype, out=out)
    ext = B.extension()
    if out is None:
        out = torch.empty(x.shape, dtype=out_dtype, device=x.device)
    if out.numel() == 0:
        return out
    args = (
        *B.view_args(x),
        out.data_ptr(),
        B.DTYPE_CODES[out_dtype],
        float(lo),
        float(hi),
        float(mean),
        float(std),
    )
    if name == "cpu":
        ext.ct_normalize_cpu(*args)
    else:
        ext.ct_normalize_cuda(*args, B.cuda_stream(x))
    return out


def _check_out(x: torch.Tensor, out: torch.Tensor, out_dtype: torch.dtype) -> None:
    """``out`` must be a contiguous (shape, dtype, device) match; it may be ``x`` itself, else not overlap."""
    if tuple(out.shape) != tuple(x.shape) or out.dtype != out_dtype or out.device != x.device:
        raise ValueError(
            f"ct_normalize: out must have x's shape {tuple(x.shape)}, dtype {out_dtype} and device {x.device}; "
            f"got {tuple(out.shape)}, {out.dtype}, {out.device}"
        )
    if not out.is_contiguous():
        raise ValueError("ct_normalize: out must be contiguous (pass out=None to get a new tensor)")
    if out.numel() == 0:
        return
    same = out.data_ptr() == x.data_ptr() and out.stride() == x.stride() and out.dtype == x.dtype
    if not same:
        if B.overlaps(x, out):
            raise ValueError(
                "ct_normalize: out overlaps x without being x itself; pass a separate tensor or x"
            )
