"""Multitask residual-encoder U-Net: segmentation with deep supervision plus a lesion-subtype head.

The segmentation part is nnU-Net v2's ``ResidualEncoderUNet`` (dynamic_network_architectures) rebuilt
with the same ``state_dict`` keys, so nnU-Net checkpoints load into it (see ``nnunet_compat``); the
classification head lives under ``head.*``.
"""

from __future__ import annotations

import logging
from typing import NamedTuple

import torch
from torch import nn

from fastpanc.model.blocks import (
    ConvNormAct,
    OpSpec,
    ResidualEncoder,
    UNetDecoder,
    fuse_inference,
    fuse_training,
)
from fastpanc.model.heads import HeadConfig, build_head
from fastpanc.model.plans_arch import ArchConfig, arch_from_plans

log = logging.getLogger(__name__)


class NetOutput(NamedTuple):
    """Network output.

    ``seg``: segmentation logits, full resolution first, each ``(B, num_seg_classes, *S_k)``; one entry
    when deep supervision is off. ``cls``: subtype logits ``(B, num_subtypes)``, None without a head.
    """

    seg: list[torch.Tensor]
    cls: torch.Tensor | None


class Features(NamedTuple):
    """Intermediate features: encoder outputs (bottleneck last) and decoder outputs (lowest res first)."""

    skips: list[torch.Tensor]
    decoder: list[torch.Tensor]


class MultitaskResEncUNet(nn.Module):
    """Residual-encoder U-Net with an optional subtype classification head.

    Input ``(B, C_in, z, y, x)`` (or ``(B, C_in, y, x)`` for 2D plans); every spatial size must be
    divisible by the product of the strides (the patch sizes nnU-Net plans are).
    """

    def __init__(
        self,
        n_stages: int,
        features_per_stage: int | list[int] | tuple[int, ...],
        kernel_sizes: int | list | tuple,
        strides: int | list | tuple,
        n_blocks_per_stage: int | list[int] | tuple[int, ...],
        n_conv_per_stage_decoder: int | list[int] | tuple[int, ...],
        num_input_channels: int = 1,
        num_seg_classes: int = 3,
        num_subtypes: int = 3,
        dim: int = 3,
        conv_bias: bool = True,
        norm_affine: bool = True,
        norm_eps: float = 1e-5,
        negative_slope: float = 0.01,
        head: str | dict | HeadConfig = "pool",
        head_hidden: int = 128,
        deep_supervision: bool = True,
    ) -> None:
        super().__init__()
        if num_input_channels < 1 or num_seg_classes < 2:
            raise ValueError(
                f"need num_input_channels >= 1 and num_seg_classes >= 2, got {num_input_channels}, {num_seg_classes}"
            )
        if num_subtypes < 0 or num_subtypes == 1:
            raise ValueError(f"num_subtypes must be 0 (no head) or >= 2, got {num_subtypes}")
        self.arch = ArchConfig.build(
            n_stages,
            features_per_stage,
            kernel_sizes,
            strides,
            n_blocks_per_stage,
            n_conv_per_stage_decoder,
            dim=dim,
            conv_bias=conv_bias,
            norm_affine=norm_affine,
            norm_eps=norm_eps,
            negative_slope=negative_slope,
        )
        a = self.arch
        ops = OpSpec(a.dim, a.conv_bias, a.norm_eps, a.norm_affine, a.negative_slope)
        self.num_input_channels = num_input_channels
        self.num_seg_classes = num_seg_classes
        self.num_subtypes = num_subtypes
        self.deep_supervision = deep_supervision
        # inference only: every layer runs channels-last (see fuse_inference)
        self.channels_last = False
        self.encoder = ResidualEncoder(
            ops, num_input_channels, a.features_per_stage, a.kernel_sizes, a.strides, a.n_blocks_per_stage
        )
        self.decoder = UNetDecoder(ops, self.encoder, num_seg_classes, a.n_conv_per_stage_decoder)
        self.head_config: HeadConfig | None = None
        self.head: nn.Module | None = None
        if num_subtypes > 0:
            if isinstance(head, HeadConfig):
                cfg = head
            elif isinstance(head, dict):  # HeadConfig fields, as fastpanc_settings() writes them
                cfg = HeadConfig(**head)
            else:
                cfg = HeadConfig(kind=head, hidden=head_hidden)
            self.head_config = cfg
            self.head = build_head(
                cfg, self.encoder.output_channels, self.decoder.output_channels, num_subtypes
            )
        if next(self.parameters()).device.type != "meta":
            # built on the meta device (a predictor that loads a checkpoint next) there is nothing to draw, and
            # torch's meta kernels for the random fills import its compiler stack (seconds)
            self.apply(_init_weights)
            _zero_last_norm_in_blocks(self)

    @classmethod
    def from_plans(
        cls,
        plans: dict,
        configuration: str = "3d_fullres",
        num_input_channels: int = 1,
        num_seg_classes: int = 3,
        num_subtypes: int = 3,
        head: str | dict | HeadConfig = "pool",
        head_hidden: int = 128,
        deep_supervision: bool = True,
    ) -> MultitaskResEncUNet:
        """Build the network the plans' ``architecture.arch_kwargs`` describe (class names are mapped,
        never imported)."""
        a = arch_from_plans(plans, configuration)
        return cls.from_arch(
            a,
            num_input_channels=num_input_channels,
            num_seg_classes=num_seg_classes,
            num_subtypes=num_subtypes,
            head=head,
            head_hidden=head_hidden,
            deep_supervision=deep_supervision,
        )

    @classmethod
    def from_arch(cls, arch: ArchConfig, **kwargs: object) -> MultitaskResEncUNet:
        """Build from an :class:`ArchConfig`; ``kwargs`` are the non-topology constructor arguments."""
        return cls(
            n_stages=arch.n_stages,
            features_per_stage=arch.features_per_stage,
            kernel_sizes=arch.kernel_sizes,
            strides=arch.strides,
            n_blocks_per_stage=arch.n_blocks_per_stage,
            n_conv_per_stage_decoder=arch.n_conv_per_stage_decoder,
            dim=arch.dim,
            conv_bias=arch.conv_bias,
            norm_affine=arch.norm_affine,
            norm_eps=arch.norm_eps,
            negative_slope=arch.negative_slope,
            **kwargs,  # type: ignore[arg-type]
        )

    @property
    def downsampling_factor(self) -> tuple[int, ...]:
        """Product of all strides per axis: input sizes must be multiples of it."""
        out = [1] * self.arch.dim
        for s in self.arch.strides:
            out = [o * int(v) for o, v in zip(out, s)]
        return tuple(out)

    def _check_input(self, x: torch.Tensor) -> None:
        if x.ndim != self.arch.dim + 2 or x.shape[1] != self.num_input_channels:
            raise ValueError(
                f"expected input (B, {self.num_input_channels}, {'z, y, x' if self.arch.dim == 3 else 'y, x'}), "
                f"got shape {tuple(x.shape)}"
            )
        f = self.downsampling_factor
        if any(int(s) % d for s, d in zip(x.shape[2:], f)):
            raise ValueError(
                f"spatial size {tuple(x.shape[2:])} must be divisible by {f} (product of the strides); "
                "pad the input or use the plans' patch size"
            )

    def forward_features(
        self, x: torch.Tensor, deep_supervision: bool | None = None
    ) -> tuple[list[torch.Tensor], Features]:
        """Run encoder and decoder.

        Returns ``(seg, Features(skips, decoder))`` with ``seg`` as in :class:`NetOutput`.
        """
        self._check_input(x)
        ds = self.deep_supervision if deep_supervision is None else deep_supervision
        if self.channels_last:
            # (B, C, *S) in (B, *S, C) memory; the weights were converted by fuse_inference
            x = x.contiguous(memory_format=self._channels_last_format())
        skips = self.encoder(x)
        seg, dec = self.decoder(skips, ds)
        if self.channels_last:  # the logits back to contiguous; the head's features stay channels-last
            seg = [s.contiguous() for s in seg]
        return seg, Features(skips, dec)

    def _channels_last_format(self) -> torch.memory_format:
        return torch.channels_last_3d if self.arch.dim == 3 else torch.channels_last

    def classify(
        self,
        feats: Features,
        seg_full: torch.Tensor,
        image: torch.Tensor | None = None,
        attention: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Subtype logits ``(B, num_subtypes)`` from features, full-resolution seg logits and the input image;
        ``attention`` (``(B, 1, *S)``) replaces the predicted lesion probability in the attention head."""
        if self.head is None:
            raise ValueError("this network has no classification head (num_subtypes=0)")
        return self.head(feats.skips, feats.decoder, seg_full, image, attention)

    def forward(self, x: torch.Tensor, attention: torch.Tensor | None = None) -> NetOutput:
        """``(B, C_in, z, y, x)`` -> :class:`NetOutput`. ``attention``: see :meth:`classify` (training)."""
        seg, feats = self.forward_features(x)
        cls_logits = self.classify(feats, seg[0], x, attention) if self.head is not None else None
        return NetOutput(seg=seg, cls=cls_logits)

    def fuse_inference(
        self, backend: str | None = "auto", channels_last: bool = False, winograd: bool = False
    ) -> MultitaskResEncUNet:
        """Prediction only: switch to the fused inference passes of :func:`fastpanc.model.blocks.fuse_inference`
        (norm + residual + LeakyReLU, skip pooling, decoder upsampling) run by ``backend``, or back to the torch
        modules with ``None``. The weights' values and the state dict's keys do not change. Returns ``self``.

        ``channels_last``: run every layer channels-last (NDHWC, ``torch.channels_last_3d``; NHWC in 2D). The
        convolution weights are converted here, each input on entry to :meth:`forward_features`, and the
        segmentation logits back to contiguous ``(B, C, *S)`` on exit (the head's features stay channels-last:
        its ops take either layout). oneDNN's CPU convolutions run faster on that layout, and the fused passes
        have channels-last kernels (torch's instance norm is slow on it, so this needs a ``backend``). The logits
        equal the contiguous fused path's to float32 rounding (benchmarks/RESULTS.md has the timings). In 3D it also
        runs the stem's one-channel convolution by ``fastpanc.ops.conv3d_narrow`` (a direct kernel that writes
        channels-last, where torch's native kernel wrote a contiguous output to convert), and every other float32
        convolution of a block by oneDNN, also the deep layers' small ones that torch would send to its native
        kernel at batch 1 (autocast and autograd keep the modules).

        ``winograd`` (with ``channels_last``): the stride-1 3x3x3 and 1x3x3 convolutions go through
        ``fastpanc.ops.conv3d_same``, whose ``auto`` takes Winograd for float32 CPU inference on wide layers
        (:data:`fastpanc.ops.winograd.MIN_CHANNELS`) and oneDNN's kernel elsewhere. Off by default: on the 2-core
        AVX-512 CPU of benchmarks/RESULTS.md the whole network ran slower with it, and the transformed weights
        take memory (benchmarks/bench_winograd.py measures both on the machine at hand).
        """
        if channels_last and backend is None:
            raise ValueError(
                "fuse_inference: channels_last=True needs a backend for the fused passes (torch's instance norm "
                "is slow on channels-last tensors), got backend=None"
            )
        if winograd and not channels_last:
            raise ValueError(
                "fuse_inference: winograd=True needs channels_last=True (the Winograd convolution reads and writes "
                "channels-last tensors)"
            )
        fuse_inference(self, backend, winograd=winograd, channels_last=channels_last)
        self._set_channels_last(channels_last)
        return self

    def fuse_training(self, backend: str | None = "auto", channels_last: bool = False) -> MultitaskResEncUNet:
        """Training on the CPU: every norm (+ residual) + LeakyReLU as ``instance_norm_act`` with its C++ backward
        (:func:`fastpanc.model.blocks.fuse_training`), or back to the torch modules with ``None``. The weights'
        values and the state dict's keys do not change. Returns ``self``.

        ``channels_last``: train every layer channels-last, as :meth:`fuse_inference` predicts: the weights are
        converted here, each input on entry and the segmentation logits back to contiguous on exit. oneDNN's
        CPU convolutions, and above all their backward at few channels, run much faster on that layout, and the
        fused norm has channels-last forward and backward kernels (benchmarks/RESULTS.md, training section).
        """
        if channels_last and backend is None:
            raise ValueError(
                "fuse_training: channels_last=True needs a backend for the fused norm (torch's instance norm is "
                "slow on channels-last tensors), got backend=None"
            )
        fuse_training(self, backend)
        self._set_channels_last(channels_last)
        return self

    def _set_channels_last(self, channels_last: bool) -> None:
        """Blocks, weights and :meth:`forward_features` to channels-last (or back to contiguous)."""
        for m in self.modules():
            if isinstance(m, ConvNormAct):
                m.fused_format = self._channels_last_format() if channels_last else None
        if channels_last or self.channels_last:
            self.to(memory_format=self._channels_last_format() if channels_last else torch.contiguous_format)
        self.channels_last = channels_last

    def segmentation_state_dict(self) -> dict[str, torch.Tensor]:
        """The weights without the head: exactly the keys of nnU-Net's ``ResidualEncoderUNet``."""
        return {k: v for k, v in self.state_dict().items() if not k.startswith("head.")}


def _init_weights(module: nn.Module) -> None:
    """He init (a=1e-2) for convs, as nnU-Net's ``InitWeights_He``; default init for the head."""
    if isinstance(module, (nn.Conv2d, nn.Conv3d, nn.ConvTranspose2d, nn.ConvTranspose3d)):
        nn.init.kaiming_normal_(module.weight, a=1e-2)
        if module.bias is not None:
            nn.init.zeros_(module.bias)


def _zero_last_norm_in_blocks(net: MultitaskResEncUNet) -> None:
    """Zero the affine weight of each residual block's last norm (``init_last_bn_before_add_to_0``)."""
    from fastpanc.model.blocks import BasicBlockD

    for m in net.modules():
        if isinstance(m, BasicBlockD) and m.conv2.norm.weight is not None:
            nn.init.zeros_(m.conv2.norm.weight)
            nn.init.zeros_(m.conv2.norm.bias)
