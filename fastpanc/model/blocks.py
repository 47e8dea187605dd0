"""Residual-encoder U-Net building blocks with dynamic_network_architectures' state-dict names.

Every module here reproduces one class of ``dynamic_network_architectures`` (``ConvDropoutNormReLU``,
``BasicBlockD``, ``StackedResidualBlocks``, ``ResidualEncoder``, ``UNetDecoder``) with the same attribute
names, including the aliases that class registers twice (``conv`` and ``all_modules.0``; the decoder's
``encoder`` reference). That keeps ``state_dict()`` key-for-key identical, so nnU-Net v2 checkpoints of a
``ResidualEncoderUNet`` load with ``load_state_dict(strict=True)`` and the outputs are the same.

Tensors are ``(B, C, *spatial)`` with ``spatial = (z, y, x)`` in 3D or ``(y, x)`` in 2D.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from fastpanc.model.pointwise import POINTWISE
from fastpanc.ops.conv_narrow import MAX_CHANNELS as NARROW_MAX_CHANNELS
from fastpanc.ops.conv_narrow import conv3d_narrow
from fastpanc.ops.norm_act import instance_norm_act
from fastpanc.ops.pool import avg_pool_down
from fastpanc.ops.upsample import depth_to_space_cat, transposed_conv_as_1x1_weight
from fastpanc.ops.winograd import conv3d_same

_CONV = {2: nn.Conv2d, 3: nn.Conv3d}
_TRANSP = {2: nn.ConvTranspose2d, 3: nn.ConvTranspose3d}
_NORM = {2: nn.InstanceNorm2d, 3: nn.InstanceNorm3d}
_AVGPOOL = {2: nn.AvgPool2d, 3: nn.AvgPool3d}


@dataclass(frozen=True)
class OpSpec:
    """Convolution dimension, norm and nonlinearity settings shared by every block.

    ``dim`` is 2 or 3; the norm is InstanceNorm (``norm_affine``, ``norm_eps``) and the nonlinearity
    LeakyReLU (``negative_slope``), the only ops nnU-Net's ResEnc plans use.
    """

    dim: int = 3
    conv_bias: bool = True
    norm_eps: float = 1e-5
    norm_affine: bool = True
    negative_slope: float = 0.01

    def __post_init__(self) -> None:
        if self.dim not in (2, 3):
            raise ValueError(f"OpSpec.dim must be 2 or 3, got {self.dim!r}")
        if self.norm_eps <= 0:
            raise ValueError(f"OpSpec.norm_eps must be > 0, got {self.norm_eps!r}")
        if self.negative_slope < 0:
            raise ValueError(f"OpSpec.negative_slope must be >= 0, got {self.negative_slope!r}")

    def conv(
        self, cin: int, cout: int, kernel: Sequence[int], stride: Sequence[int], bias: bool
    ) -> nn.Module:
        """A 'same'-padded convolution as dynamic_network_architectures builds it (1x1, stride 1: as a matrix
        product on the CPU, :mod:`fastpanc.model.pointwise`)."""
        if all(k == 1 for k in kernel) and all(s == 1 for s in stride):
            return POINTWISE[self.dim](cin, cout, bias=bias)
        return _CONV[self.dim](
            cin,
            cout,
            tuple(kernel),
            tuple(stride),
            padding=[(k - 1) // 2 for k in kernel],
            dilation=1,
            bias=bias,
        )

    def norm(self, channels: int) -> nn.Module:
        return _NORM[self.dim](channels, eps=self.norm_eps, affine=self.norm_affine)

    def nonlin(self) -> nn.Module:
        return nn.LeakyReLU(negative_slope=self.negative_slope, inplace=True)


def as_tuple(value: int | Sequence[int], dim: int) -> tuple[int, ...]:
    """Broadcast an int to a ``dim``-tuple; check a sequence has ``dim`` entries."""
    if isinstance(value, int):
        return (value,) * dim
    out = tuple(int(v) for v in value)
    if len(out) != dim:
        raise ValueError(f"expected an int or {dim} ints (one per spatial axis), got {list(value)!r}")
    return out


class ConvNormAct(nn.Module):
    """Conv -> InstanceNorm -> (LeakyReLU): ``ConvDropoutNormReLU`` with the same parameter names.

    ``(B, cin, *S) -> (B, cout, *S / stride)``.
    """

    def __init__(
        self,
        ops: OpSpec,
        cin: int,
        cout: int,
        kernel: Sequence[int],
        stride: Sequence[int],
        act: bool,
        bias: bool | None = None,
    ) -> None:
        super().__init__()
        self.conv = ops.conv(cin, cout, kernel, stride, ops.conv_bias if bias is None else bias)
        self.norm = ops.norm(cout)
        modules = [self.conv, self.norm]
        if act:
            self.nonlin = ops.nonlin()
            modules.append(self.nonlin)
        self.all_modules = nn.Sequential(*modules)
        # a backend name ("auto", "cpu", ...) runs norm and nonlinearity as one fastpanc.ops.instance_norm_act
        # pass over the convolution output (see fuse_inference and fuse_training)
        self.fused_norm: str | None = None
        # inference, set by MultitaskResEncUNet.fuse_inference(channels_last=True): the layout the fused pass
        # takes when the convolution did not write it (torch runs small and one-channel convolutions through a
        # path that writes contiguous outputs); converting here costs one copy, the next layer would make two
        self.fused_format: torch.memory_format | None = None
        # inference, set by fuse_inference(winograd=True) where winograd_eligible(conv): a backend name runs the
        # convolution as fastpanc.ops.conv3d_same (Winograd on the CPU where it is the faster kernel)
        self.fused_conv: str | None = None
        # inference, set by MultitaskResEncUNet.fuse_inference(channels_last=True) where narrow_eligible(conv) (the
        # stem): a backend name runs the convolution as fastpanc.ops.conv3d_narrow, channels-last out
        self.narrow_conv: str | None = None
        # inference, set by fuse_inference(channels_last=True): float32 CPU convolutions straight to oneDNN (see
        # conv_forward)
        self.onednn_conv = False

    def conv_forward(self, x: torch.Tensor) -> torch.Tensor:
        """This block's convolution: ``fastpanc.ops.conv3d_same`` when ``fused_conv`` is set,
        ``fastpanc.ops.conv3d_narrow`` when ``narrow_conv`` is, oneDNN with ``onednn_conv``, the module else."""
        if self.fused_conv is not None:
            return conv3d_same(x, self.conv.weight, self.conv.bias, backend=self.fused_conv)
        if self.narrow_conv is not None:
            return conv3d_narrow(x, self.conv.weight, self.conv.bias, backend=self.narrow_conv)
        if self.onednn_conv and _onednn_takes(x, self.conv):
            # torch sends a batch-1 float32 convolution with N * C * D * H <= 20480 (the deep, wide, small layers)
            # to its native kernel, which copies the weight to contiguous on every call and took twice oneDNN's
            # time on those layers (benchmarks/RESULTS.md); the large ones go to this same oneDNN kernel anyway
            c = self.conv
            return torch.ops.aten.mkldnn_convolution(
                x, c.weight, c.bias, c.padding, c.stride, c.dilation, c.groups
            )
        return self.conv(x)

    def norm_act(
        self, y: torch.Tensor, residual: torch.Tensor | None = None, slope: float | None = None
    ) -> torch.Tensor:
        """This block's norm (+ ``residual``) and its own nonlinearity (or LeakyReLU ``slope``) in one fused pass,
        written over the convolution output ``y`` (a new tensor when autograd records it)."""
        if slope is None and hasattr(self, "nonlin"):
            slope = self.nonlin.negative_slope
        norm = self.norm
        return instance_norm_act(
            y,
            norm.weight,
            norm.bias,
            norm.eps,
            slope,
            residual,
            backend=self.fused_norm,  # set: norm_act runs only on the fused path
            inplace=True,
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.fused_norm is not None:
            y = self.conv_forward(x)
            if self.fused_format is not None and not y.is_contiguous(memory_format=self.fused_format):
                y = y.contiguous(memory_format=self.fused_format)
            return self.norm_act(y)
        return self.all_modules(x)


def winograd_eligible(conv: nn.Module) -> bool:
    """Whether ``conv`` is a convolution :func:`fastpanc.ops.conv3d_same` computes: 3D, (3, 3, 3) or (1, 3, 3)
    kernel, stride 1, 'same' zero padding, no dilation or groups."""
    return _same_stride1_conv3d(conv) and tuple(conv.kernel_size) in ((3, 3, 3), (1, 3, 3))


def _same_stride1_conv3d(conv: nn.Module) -> bool:
    """A 3D convolution with odd kernel sizes, stride 1, 'same' zero padding, no dilation or groups."""
    return (
        type(conv) is nn.Conv3d
        and all(k % 2 == 1 for k in conv.kernel_size)
        and tuple(conv.stride) == (1, 1, 1)
        and tuple(conv.dilation) == (1, 1, 1)
        and conv.groups == 1
        and conv.padding_mode == "zeros"
        and tuple(conv.padding) == tuple(k // 2 for k in conv.kernel_size)
    )


def _onednn_takes(x: torch.Tensor, conv: nn.Module) -> bool:
    """Whether ``conv(x)`` can run as ``aten::mkldnn_convolution``: a 3D float32 CPU convolution with zero padding
    given as sizes, outside autocast and autograd."""
    return (
        type(conv) is nn.Conv3d
        and x.device.type == "cpu"
        and x.dtype == torch.float32
        and conv.weight.dtype == torch.float32
        and conv.padding_mode == "zeros"
        and not isinstance(conv.padding, str)
        and not torch.is_autocast_enabled("cpu")
        and not (torch.is_grad_enabled() and (x.requires_grad or conv.weight.requires_grad))
    )


def narrow_eligible(conv: nn.Module) -> bool:
    """Whether ``conv`` is a convolution :func:`fastpanc.ops.conv3d_narrow` takes in ``auto``: 3D, at most
    :data:`fastpanc.ops.conv_narrow.MAX_CHANNELS` input channels, odd kernel, stride 1, 'same' zero padding, no
    dilation or groups."""
    return _same_stride1_conv3d(conv) and conv.in_channels <= NARROW_MAX_CHANNELS


def fuse_inference(
    module: nn.Module, backend: str | None = "auto", winograd: bool = False, channels_last: bool = False
) -> None:
    """Switch the blocks under ``module`` to fused inference passes run by ``backend`` (a
    ``fastpanc.ops`` backend name), or back to the torch modules with ``None``.

    - every :class:`ConvNormAct`: norm (+ residual) + LeakyReLU as one ``instance_norm_act`` pass; with
      ``winograd``, its stride-1 3x3x3 and 1x3x3 convolution as ``conv3d_same`` (``auto``: Winograd F(4, 3) for
      float32 CPU inference from :data:`fastpanc.ops.winograd.MIN_CHANNELS` input channels, ``F.conv3d`` else;
      its output is channels-last, so this is for channels-last networks);
    - every :class:`UNetDecoder`: each transposed convolution as a 1x1 convolution plus
      ``depth_to_space_cat``, which also writes the skip (no ``torch.cat``);
    - every :class:`BasicBlockD`: the strided skip's average pooling as ``avg_pool_down`` in the input's dtype.

    With ``channels_last`` (the caller converts the layout) and a backend, a block's one-channel stem convolution runs
    as ``conv3d_narrow`` (channels-last out) and every other float32 CPU block convolution straight through oneDNN
    (``ConvNormAct.conv_forward``).

    The upsampling and pooling passes have no backward: use this for prediction only (:func:`fuse_training`
    fuses what trains).
    """
    onednn = channels_last and backend is not None and torch.backends.mkldnn.is_available()
    for m in module.modules():
        if isinstance(m, ConvNormAct):
            m.fused_norm = _norm_backend(m, backend, "fuse_inference")
            m.fused_conv = _conv_backend(m, backend, winograd)
            narrow = channels_last and backend is not None and narrow_eligible(m.conv)
            m.narrow_conv = _kernel_backend(backend) if narrow else None
            m.onednn_conv = onednn
        elif isinstance(m, UNetDecoder):
            m.fused_upsample = backend
        elif isinstance(m, BasicBlockD):
            m.fused_pool = backend


def fuse_training(module: nn.Module, backend: str | None = "auto") -> None:
    """Switch every :class:`ConvNormAct` under ``module`` to ``instance_norm_act`` with autograd, run by
    ``backend``: norm (+ the block's residual) + LeakyReLU as one pass forward and one backward (C++ on the CPU).
    ``None`` goes back to the torch modules. Pooling and upsampling stay torch's modules; the state dict does
    not change.

    On CUDA tensors that require grad ``auto`` takes the pure-torch reference (the Triton kernel has no backward)
    and logs it as a slow path, so train on a GPU with the torch modules.
    """
    for m in module.modules():
        if isinstance(m, ConvNormAct):
            m.fused_norm = _norm_backend(m, backend, "fuse_training")
            m.fused_conv = m.narrow_conv = None
            m.onednn_conv = False


def _conv_backend(m: ConvNormAct, backend: str | None, winograd: bool) -> str | None:
    """``conv3d_same``'s backend for ``m``'s convolution: ``auto`` (Winograd only where it is the faster kernel:
    an explicit ``cpu`` for the fused passes must not force it onto narrow layers, bfloat16 or autograd), the
    ``reference`` when asked, ``None`` (the module) without ``winograd`` or for other convolutions."""
    if backend is None or not winograd or not winograd_eligible(m.conv):
        return None
    return _kernel_backend(backend)


def _kernel_backend(backend: str) -> str:
    """A convolution op's backend for a fused-pass ``backend``: ``auto`` (the op's C++ kernel only where it takes
    the call: not under autocast or autograd, and an explicit ``cpu`` must not force it there), or the
    ``reference`` when asked."""
    return "reference" if backend == "reference" else "auto"


def _norm_backend(m: ConvNormAct, backend: str | None, caller: str) -> str | None:
    if backend is not None and not isinstance(m.norm, (nn.InstanceNorm2d, nn.InstanceNorm3d)):
        raise ValueError(f"{caller}: only instance norm fuses, got {type(m.norm).__name__}")
    return backend


class StackedConvs(nn.Module):
    """``n`` ConvNormAct blocks, the first with ``stride`` (``StackedConvBlocks``: key ``convs``)."""

    def __init__(
        self, ops: OpSpec, n: int, cin: int, cout: int, kernel: Sequence[int], stride: Sequence[int]
    ) -> None:
        super().__init__()
        ones = (1,) * ops.dim
        self.convs = nn.Sequential(
            *[
                ConvNormAct(ops, cin if i == 0 else cout, cout, kernel, stride if i == 0 else ones, act=True)
                for i in range(n)
            ]
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.convs(x)


class BasicBlockD(nn.Module):
    """ResNet-D basic block: two convs, skip = avg-pool (if strided) + 1x1 projection (if widening).

    ``(B, cin, *S) -> (B, cout, *S / stride)``.
    """

    def __init__(
        self, ops: OpSpec, cin: int, cout: int, kernel: Sequence[int], stride: Sequence[int]
    ) -> None:
        super().__init__()
        ones = (1,) * ops.dim
        self.conv1 = ConvNormAct(ops, cin, cout, kernel, stride, act=True)
        self.conv2 = ConvNormAct(ops, cout, cout, kernel, ones, act=False)
        self.nonlin2 = ops.nonlin()
        has_stride = any(s != 1 for s in stride)
        skip: list[nn.Module] = []
        if has_stride:
            skip.append(_AVGPOOL[ops.dim](tuple(stride), tuple(stride)))
        if cin != cout:
            # dynamic_network_architectures builds the projection without bias whatever conv_bias says
            skip.append(ConvNormAct(ops, cin, cout, ones, ones, act=False, bias=False))
        self.skip: nn.Module = nn.Sequential(*skip) if skip else nn.Identity()
        # inference only: a backend name runs the skip's average pooling as fastpanc.ops.avg_pool_down in the
        # input's dtype (see fuse_inference)
        self.fused_pool: str | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.conv2.fused_norm is not None:  # conv2's norm, the residual and nonlin2 in one pass
            residual = self._fused_skip(x)
            y = self.conv2.conv_forward(self.conv1(x))
            return self.conv2.norm_act(y, residual, self.nonlin2.negative_slope)
        residual = self.skip(x)
        out = self.conv2(self.conv1(x))
        out = out + residual
        return self.nonlin2(out)

    def _fused_skip(self, x: torch.Tensor) -> torch.Tensor:
        """The skip path, with average pooling in ``x``'s own dtype (``fastpanc.ops.avg_pool_down``) when
        ``fused_pool`` is set: torch's CPU pool has no bfloat16 kernel, so autocast would widen the whole block
        input to float32 for it."""
        if self.fused_pool is None or isinstance(self.skip, nn.Identity):
            return self.skip(x)
        for m in self.skip:
            if isinstance(m, (nn.AvgPool2d, nn.AvgPool3d)):
                x = avg_pool_down(x, as_tuple(m.stride, x.dim() - 2), backend=self.fused_pool)
            else:
                x = m(x)
        return x


class ResidualStage(nn.Module):
    """``n_blocks`` BasicBlockD, the first one strided (``StackedResidualBlocks``: key ``blocks``)."""

    def __init__(
        self, ops: OpSpec, n_blocks: int, cin: int, cout: int, kernel: Sequence[int], stride: Sequence[int]
    ) -> None:
        super().__init__()
        ones = (1,) * ops.dim
        self.blocks = nn.Sequential(
            *[
                BasicBlockD(ops, cin if i == 0 else cout, cout, kernel, stride if i == 0 else ones)
                for i in range(n_blocks)
            ]
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(x)


class ResidualEncoder(nn.Module):
    """Stem (one conv) plus one residual stage per resolution; returns every stage's output.

    ``(B, C_in, *S) -> [ (B, features[s], *S / prod(strides[:s+1])) for s in stages ]``, the last entry
    being the bottleneck.
    """

    def __init__(
        self,
        ops: OpSpec,
        input_channels: int,
        features_per_stage: Sequence[int],
        kernel_sizes: Sequence[Sequence[int]],
        strides: Sequence[Sequence[int]],
        n_blocks_per_stage: Sequence[int],
    ) -> None:
        super().__init__()
        ones = (1,) * ops.dim
        self.stem = StackedConvs(ops, 1, input_channels, features_per_stage[0], kernel_sizes[0], ones)
        stages = []
        cin = features_per_stage[0]
        for s, cout in enumerate(features_per_stage):
            stages.append(ResidualStage(ops, n_blocks_per_stage[s], cin, cout, kernel_sizes[s], strides[s]))
            cin = cout
        self.stages = nn.Sequential(*stages)
        self.output_channels = list(features_per_stage)
        self.strides = [tuple(s) for s in strides]
        self.kernel_sizes = [tuple(k) for k in kernel_sizes]

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.stem(x)
        skips = []
        for stage in self.stages:
            x = stage(x)
            skips.append(x)
        return skips


class UNetDecoder(nn.Module):
    """Transposed-conv upsampling, concatenation with the skip, conv stage and a 1x1 seg layer per scale.

    ``encoder`` is kept as a registered submodule as in dynamic_network_architectures, so its parameters
    appear a second time under ``decoder.encoder.*`` in ``state_dict()`` (same tensors, needed for
    nnU-Net checkpoint compatibility).
    """

    def __init__(
        self,
        ops: OpSpec,
        encoder: ResidualEncoder,
        num_classes: int,
        n_conv_per_stage: Sequence[int],
    ) -> None:
        super().__init__()
        self.encoder = encoder
        self.num_classes = num_classes
        n_enc = len(encoder.output_channels)
        stages, transpconvs, seg_layers = [], [], []
        for s in range(1, n_enc):
            below = encoder.output_channels[-s]
            skip = encoder.output_channels[-(s + 1)]
            stride = encoder.strides[-s]
            transpconvs.append(_TRANSP[ops.dim](below, skip, stride, stride, bias=ops.conv_bias))
            stages.append(
                StackedConvs(
                    ops,
                    n_conv_per_stage[s - 1],
                    2 * skip,
                    skip,
                    encoder.kernel_sizes[-(s + 1)],
                    (1,) * ops.dim,
                )
            )
            seg_layers.append(POINTWISE[ops.dim](skip, num_classes, bias=True))
        self.stages = nn.ModuleList(stages)
        self.transpconvs = nn.ModuleList(transpconvs)
        self.seg_layers = nn.ModuleList(seg_layers)
        self.output_channels = [encoder.output_channels[-(s + 1)] for s in range(1, n_enc)]
        # inference only: a backend name runs each upsampling + concatenation as a 1x1 convolution and
        # fastpanc.ops.depth_to_space_cat (see fuse_inference)
        self.fused_upsample: str | None = None

    def _upsample_cat(self, s: int, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        tc = self.transpconvs[s]
        if self.fused_upsample is None:
            return torch.cat((tc(x), skip), 1)
        # the transposed convolutions have kernel == stride, no padding (built above)
        conv = F.conv3d if x.dim() == 5 else F.conv2d
        y = conv(x, transposed_conv_as_1x1_weight(tc.weight))
        return depth_to_space_cat(y, tc.stride, tc.bias, skip, backend=self.fused_upsample)

    def forward(
        self, skips: list[torch.Tensor], deep_supervision: bool
    ) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Decode encoder outputs.

        Returns ``(seg, features)``: ``seg`` full resolution first, each ``(B, num_classes, *S_k)`` (all
        decoder scales when ``deep_supervision``, else only the full-resolution one); ``features`` the
        decoder stage outputs, lowest resolution first, ``(B, output_channels[k], *S_k)``.
        """
        x = skips[-1]
        seg: list[torch.Tensor] = []
        feats: list[torch.Tensor] = []
        last = len(self.stages) - 1
        for s in range(len(self.stages)):
            x = self._upsample_cat(s, x, skips[-(s + 2)])
            x = self.stages[s](x)
            feats.append(x)
            if deep_supervision or s == last:
                seg.append(self.seg_layers[s](x))
        return seg[::-1], feats
