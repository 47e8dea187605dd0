"""Instance norm + residual + LeakyReLU in one pass: the op every ResEnc block ends with.

In inference the network's ``InstanceNorm -> (+ residual) -> LeakyReLU`` sequences are memory-bound
passes around the convolutions (torch's CPU instance norm is also slow on bfloat16 tensors:
benchmarks/bench_fused_ops.py). ``instance_norm_act`` reads the
convolution output in its own dtype, computes the statistics and the affine map in float32, adds the
residual, applies the nonlinearity and writes the result once.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from fastpanc.ops import _backend as B

_DTYPES = (torch.float32, torch.float16, torch.bfloat16)


def instance_norm_act_reference(
    x: torch.Tensor,
    weight: torch.Tensor | None,
    bias: torch.Tensor | None,
    eps: float = 1e-5,
    negative_slope: float | None = None,
    residual: torch.Tensor | None = None,
    out_dtype: torch.dtype | None = None,
) -> torch.Tensor:
    """The definition, in float32: ``act(instance_norm(x) * weight + bias + residual)``."""
    y = F.instance_norm(
        x.float(),
        weight=None if weight is None else weight.float(),
        bias=None if bias is None else bias.float(),
        eps=eps,
    )
    if residual is not None:
        y = y + residual.float()
    if negative_slope is not None:
        y = F.leaky_relu(y, negative_slope)
    return y.to(out_dtype or _default_out_dtype(x, residual))


def _default_out_dtype(x: torch.Tensor, residual: torch.Tensor | None) -> torch.dtype:
    return x.dtype if residual is None else torch.promote_types(x.dtype, residual.dtype)


def instance_norm_act(
    x: torch.Tensor,
    weight: torch.Tensor | None,
    bias: torch.Tensor | None,
    eps: float = 1e-5,
    negative_slope: float | None = None,
    residual: torch.Tensor | None = None,
    out_dtype: torch.dtype | None = None,
    backend: str = "auto",
    inplace: bool = False,
) -> torch.Tensor:
    """Instance-normalise each ``(b, c)`` plane, apply the affine map, add ``residual``, then LeakyReLU.

    Inference only: no autograd (the ``cpu`` backend refuses inputs that require grad).

    Args:
        x: ``(B, C, *S)`` float32, float16 or bfloat16 (a convolution's output).
        weight, bias: ``(C,)`` affine parameters or None (1 and 0).
        eps: added to the biased variance, as ``nn.InstanceNorm``.
        negative_slope: LeakyReLU slope, or None for no nonlinearity.
        residual: optional tensor of ``x``'s shape, any of the three dtypes, added after the affine map.
        out_dtype: result dtype; default ``x.dtype``, or the promotion of ``x`` and ``residual`` dtypes.
        backend: ``auto``, ``reference``, ``cpu`` (C++/OpenMP) or ``triton`` (GPUs; CPU tensors under
            ``TRITON_INTERPRET=1``). Neither kernel has a backward.
        inplace: write the result into ``x`` (when ``x`` is contiguous and ``out_dtype`` is its dtype).

    Returns:
        A contiguous ``(B, C, *S)`` tensor of ``out_dtype`` (``x`` itself when written in place).
    """
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"instance_norm_act: expected a torch.Tensor, got {type(x).__name__}")
    if x.dim() < 3:
        raise ValueError(f"instance_norm_act: expected (B, C, *spatial), got shape {tuple(x.shape)}")
    if x.dtype not in _DTYPES:
        raise ValueError(f"instance_norm_act: x dtype {x.dtype} is not supported; expected one of {_DTYPES}")
    channels = x.shape[1]
    if x.numel() and x[0, 0].numel() < 2:
        raise ValueError(
            f"instance_norm_act: each (b, c) plane needs more than 1 voxel for its statistics (as torch's "
            f"instance norm), got shape {tuple(x.shape)}"
        )
    for name, p in (("weight", weight), ("bias", bias)):
        if p is not None and (p.dim() != 1 or p.shape[0] != channels):
            raise ValueError(f"instance_norm_act: {name} must have shape ({channels},), got {tuple(p.shape)}")
    if residual is not None:
        if tuple(residual.shape) != tuple(x.shape):
            raise ValueError(
                f"instance_norm_act: residual must have x's shape {tuple(x.shape)}, got {tuple(residual.shape)}"
            )
        if residual.dtype not in _DTYPES:
            raise ValueError(f"instance_norm_act: residual dtype {residual.dtype} is not supported")
    if not eps > 0:
        raise ValueError(f"instance_norm_act: eps must be > 0, got {eps}")
    if negative_slope is not None and not negative_slope >= 0:
        raise ValueError(f"instance_norm_act: negative_slope must be >= 0 or None, got {negative_slope}")
    out_dtype = out_dtype or _default_out_dtype(x, residual)
    if out_dtype not in _DTYPES:
        raise ValueError(f"instance_norm_act: out_dtype must be one of {_DTYPES}, got {out_dtype}")

    name = B.choose(
        "instance_norm_act",
        backend,
        {
            "reference": lambda: None,
            "cpu": lambda: B.cpu_inference_reason(x, weight, bias, residual),
            "triton": lambda: B.triton_inference_reason(x, weight, bias, residual),
        },
        B.auto_order(x.device, cpu=["cpu"], cuda=["triton"]),
    )
    if name == "reference":
        y = instance_norm_act_reference(x, weight, bias, eps, negative_slope, residual, out_dtype)
        if inplace and x.is_contiguous() and out_dtype == x.dtype:
            return x.copy_(y)
        return y

    x = x.contiguous()
    if residual is not None:
        residual = residual.contiguous()
    if inplace and out_dtype == x.dtype and (residual is None or not B.overlaps(x, residual)):
        out = x
    else:
        out = torch.empty(x.shape, dtype=out_dtype, device=x.device)
    if x.numel() == 0:
        return out
    w = None if weight is None else weight.detach().float().contiguous()
    b = None if bias is None else bias.detach().float().contiguous()
    if name == "triton":
        from fastpanc.kernels.norm_act import instance_norm_act_triton

        return instance_norm_act_triton(x, w, b, eps, negative_slope, residual, out)
    B.extension().instance_norm_act_cpu(
        x.data_ptr(),
        B.DTYPE_CODES[x.dtype],
        0 if residual is None else residual.data_ptr(),
        B.DTYPE_CODES[x.dtype if residual is None else residual.dtype],
        out.data_ptr(),
        B.DTYPE_CODES[out_dtype],
        x.shape[0] * channels,
        channels,
        x[0, 0].numel(),
        0 if w is None else w.data_ptr(),
        0 if b is None else b.data_ptr(),
        float(eps),
        negative_slope is not None,
        float(negative_slope or 0.0),
    )
    return out
