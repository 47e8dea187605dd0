"""Instance norm + residual + LeakyReLU in one pass: the op every ResEnc block ends with.

The network's ``InstanceNorm -> (+ residual) -> LeakyReLU`` sequences are memory-bound passes around the
convolutions (torch's CPU instance norm is also slow on bfloat16 tensors: benchmarks/bench_fused_ops.py).
``instance_norm_act`` reads the convolution output in its own dtype, computes the statistics and the affine
map in float32, adds the residual, applies the nonlinearity and writes the result once.

Training (CPU): when autograd records the call, the C++ forward also returns each ``(b, c)`` plane's mean and
``rstd = 1 / sqrt(var + eps)``, and a C++ backward computes the gradients of ``x``, ``weight``, ``bias`` and
``residual`` through the LeakyReLU (read from the output: ``y > 0`` exactly where its input is, for
``slope >= 0``), the residual add and the affine map. It saves ``x``, the output (only with the nonlinearity),
the float32 weight and the two ``(B * C,)`` statistics: what torch's ``InstanceNorm`` (input, weight, mean,
invstd) and in-place ``LeakyReLU`` (output) save for the same sequence. The Triton kernel has no backward.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from fastpanc.ops import _backend as B
from fastpanc.ops._layout import channels_last_format

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


class _InstanceNormAct(torch.autograd.Function):
    """The C++ CPU forward and backward of :func:`instance_norm_act`; ``x`` and ``residual`` are dense in ``fmt``
    (``torch.contiguous_format`` or a channels-last format), checked by the caller."""

    @staticmethod
    def forward(ctx, x, weight, bias, residual, eps, negative_slope, out_dtype, fmt):  # noqa: D102
        w = None if weight is None else weight.detach().float().contiguous()
        b = None if bias is None else bias.detach().float().contiguous()
        out = torch.empty_like(x, dtype=out_dtype, memory_format=fmt)
        planes = x.shape[0] * x.shape[1]
        mean = torch.empty(planes, dtype=torch.float32)  # (b, c) order in both layouts
        rstd = torch.empty(planes, dtype=torch.float32)
        if x.numel():
            cpu_forward(x, w, b, eps, negative_slope, residual, out, mean, rstd, fmt)
        ctx.fmt = fmt
        act = negative_slope is not None
        # the output only where the backward reads it (the LeakyReLU's mask), as torch's in-place LeakyReLU saves it
        ctx.save_for_backward(x, out if act else None, w, mean, rstd)
        ctx.slope = negative_slope
        ctx.dtypes = (x.dtype, None if residual is None else residual.dtype)
        ctx.param_dtypes = (None if weight is None else weight.dtype, None if bias is None else bias.dtype)
        return out

    @staticmethod
    def backward(ctx, grad_out):  # noqa: D102
        x, y, w, mean, rstd = ctx.saved_tensors
        x_dtype, r_dtype = ctx.dtypes
        need_x, need_w, need_b, need_r = ctx.needs_input_grad[:4]
        act = ctx.slope is not None
        if grad_out.dtype not in _DTYPES:
            grad_out = grad_out.float()
        fmt, channels_last = ctx.fmt, ctx.fmt != torch.contiguous_format
        grad_out = grad_out.contiguous(memory_format=fmt)
        gx = torch.empty_like(x, dtype=x_dtype, memory_format=fmt) if need_x else None
        gr = None
        if need_r:
            # without the nonlinearity grad_residual is grad_out itself (as torch's add passes it on)
            gr = (
                grad_out
                if not act and grad_out.dtype == r_dtype
                else torch.empty_like(x, dtype=r_dtype, memory_format=fmt)
            )
        planes, channels = x.shape[0] * x.shape[1], x.shape[1]
        sum_dz = torch.zeros(planes, dtype=torch.float32)
        sum_dz_xhat = torch.zeros(planes, dtype=torch.float32)
        kernel = B.extension().instance_norm_act_backward_cpu
        if channels_last:  # the same arguments with (batch, channels, voxels)
            kernel = B.extension().instance_norm_act_cl_backward_cpu
        if x.numel():
            kernel(
                grad_out.data_ptr(),
                B.DTYPE_CODES[grad_out.dtype],
                x.data_ptr(),
                B.DTYPE_CODES[x.dtype],
                0 if y is None else y.data_ptr(),
                B.DTYPE_CODES[x.dtype if y is None else y.dtype],
                0 if gx is None else gx.data_ptr(),
                B.DTYPE_CODES[x_dtype],
                0 if gr is None or gr is grad_out else gr.data_ptr(),
                B.DTYPE_CODES[grad_out.dtype if gr is None else gr.dtype],
                x.shape[0] if channels_last else planes,
                channels,
                x[0, 0].numel(),
                mean.data_ptr(),
                rstd.data_ptr(),
                0 if w is None else w.data_ptr(),
                sum_dz.data_ptr(),
                sum_dz_xhat.data_ptr(),
                act,
                float(ctx.slope or 0.0),
            )
        w_dtype, b_dtype = ctx.param_dtypes
        # (B * C,) plane sums -> (C,) parameter gradients
        gw = sum_dz_xhat.view(-1, channels).sum(0).to(w_dtype) if need_w else None
        gb = sum_dz.view(-1, channels).sum(0).to(b_dtype) if need_b else None
        return gx, gw, gb, gr, None, None, None, None


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

    Differentiable on the ``cpu`` and ``reference`` backends: when autograd records the call (grad enabled and
    an input that requires grad) the ``cpu`` backend runs its C++ forward and backward (see the module
    docstring). The ``triton`` backend is inference only, so on CUDA tensors that require grad ``auto`` takes the
    reference, and says so (a logged slow path, listed by ``fastpanc info``).

    Args:
        x: ``(B, C, *S)`` float32, float16 or bfloat16 (a convolution's output).
        weight, bias: ``(C,)`` affine parameters or None (1 and 0).
        eps: added to the biased variance, as ``nn.InstanceNorm``.
        negative_slope: LeakyReLU slope (>= 0), or None for no nonlinearity.
        residual: optional tensor of ``x``'s shape, any of the three dtypes, added after the affine map.
        out_dtype: result dtype; default ``x.dtype``, or the promotion of ``x`` and ``residual`` dtypes.
        backend: ``auto``, ``reference``, ``cpu`` (C++/OpenMP, with a backward) or ``triton`` (GPUs; CPU
            tensors under ``TRITON_INTERPRET=1``; no backward).
        inplace: write the result into ``x`` (when ``x`` is dense, ``out_dtype`` is its dtype and autograd
            does not record the call: its backward needs ``x``).

    Returns:
        A contiguous ``(B, C, *S)`` tensor of ``out_dtype`` (``x`` itself when written in place); channels-last
        when ``x`` is channels-last (``torch.channels_last_3d`` / ``channels_last`` strides) and the backend is
        ``cpu``: its channels-last kernels (forward and backward) read and write that layout directly.
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

    present = [t for t in (x, weight, bias, residual) if t is not None]
    grad = B.records_grad(*present)
    name = B.choose(
        "instance_norm_act",
        backend,
        {
            "reference": lambda: None,
            "cpu": lambda: B.cpu_reason(*present),
            "triton": lambda: B.triton_inference_reason(*present),
        },
        B.auto_order(x.device, cpu=["cpu"], cuda=["triton"]),
    )
    inplace = inplace and not grad
    if name == "reference":
        y = instance_norm_act_reference(x, weight, bias, eps, negative_slope, residual, out_dtype)
        if inplace and x.is_contiguous() and out_dtype == x.dtype:
            return x.copy_(y)
        return y

    # the cpu backend reads and writes channels-last data (an NDHWC convolution's output) in that layout
    fmt = (channels_last_format(x) if name == "cpu" else None) or torch.contiguous_format
    x = x.contiguous(memory_format=fmt)
    if residual is not None:
        residual = residual.contiguous(memory_format=fmt)
    if name == "cpu" and grad:  # training: the C++ forward and backward
        return _InstanceNormAct.apply(x, weight, bias, residual, float(eps), negative_slope, out_dtype, fmt)
    if inplace and out_dtype == x.dtype and (residual is None or not B.overlaps(x, residual)):
        out = x
    else:
        out = torch.empty_like(x, dtype=out_dtype, memory_format=fmt)
    if x.numel() == 0:
        return out
    w = None if weight is None else weight.detach().float().contiguous()
    b = None if bias is None else bias.detach().float().contiguous()
    if name == "triton":
        from fastpanc.kernels.norm_act import instance_norm_act_triton

        return instance_norm_act_triton(x, w, b, eps, negative_slope, residual, out)
    cpu_forward(x, w, b, eps, negative_slope, residual, out, fmt=fmt)
    return out


def cpu_forward(
    x: torch.Tensor,
    w: torch.Tensor | None,
    b: torch.Tensor | None,
    eps: float,
    negative_slope: float | None,
    residual: torch.Tensor | None,
    out: torch.Tensor,
    mean: torch.Tensor | None = None,
    rstd: torch.Tensor | None = None,
    fmt: torch.memory_format = torch.contiguous_format,
) -> None:
    """One C++ forward over ``x`` into ``out`` (both dense in ``fmt``; ``w``/``b`` float32 and contiguous),
    optionally writing each ``(b, c)``'s float32 mean and rstd."""
    channels_last = fmt != torch.contiguous_format
    ext = B.extension()
    kernel = ext.instance_norm_act_cl_cpu if channels_last else ext.instance_norm_act_cpu
    kernel(
        x.data_ptr(),
        B.DTYPE_CODES[x.dtype],
        0 if residual is None else residual.data_ptr(),
        B.DTYPE_CODES[x.dtype if residual is None else residual.dtype],
        out.data_ptr(),
        B.DTYPE_CODES[out.dtype],
        x.shape[0] if channels_last else x.shape[0] * x.shape[1],  # samples, or (b, c) planes
        x.shape[1],
        x[0, 0].numel(),  # voxels per (b, c)
        0 if w is None else w.data_ptr(),
        0 if b is None else b.data_ptr(),
        float(eps),
        negative_slope is not None,
        float(negative_slope or 0.0),
        0 if mean is None else mean.data_ptr(),
        0 if rstd is None else rstd.data_ptr(),
    )
