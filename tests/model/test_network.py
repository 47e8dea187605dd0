"""Shapes, topologies, head kinds, gradients and plans validation of MultitaskResEncUNet."""

from __future__ import annotations

import copy

import pytest
import torch

from fastpanc.data.plan_rules import resenc_architecture
from fastpanc.model import ArchConfig, HeadConfig, MultitaskResEncUNet, arch_from_plans
from fastpanc.model.blocks import BasicBlockD, ConvNormAct
from fastpanc.model.losses import LossConfig, MultitaskLoss
from fastpanc.ops import BackendUnavailableError

TOPOLOGIES = {
    # isotropic 3D, 4 stages
    "iso3d": dict(
        n_stages=4,
        features_per_stage=[4, 8, 16, 16],
        kernel_sizes=3,
        strides=[1, 2, 2, 2],
        n_blocks_per_stage=[1, 2, 2, 2],
        n_conv_per_stage_decoder=1,
    ),
    # anisotropic like the real ResEnc M plans: (1,3,3) kernel first, no z pooling at the first step
    "aniso3d": dict(
        n_stages=4,
        features_per_stage=[4, 8, 12, 16],
        kernel_sizes=[[1, 3, 3], [3, 3, 3], [3, 3, 3], [3, 3, 3]],
        strides=[[1, 1, 1], [1, 2, 2], [2, 2, 2], [2, 2, 2]],
        n_blocks_per_stage=[1, 1, 2, 1],
        n_conv_per_stage_decoder=[1, 2, 1],
    ),
    "plain2d": dict(
        n_stages=3,
        features_per_stage=[4, 8, 8],
        kernel_sizes=3,
        strides=[1, 2, 2],
        n_blocks_per_stage=1,
        n_conv_per_stage_decoder=1,
        dim=2,
    ),
}


def _net(name: str, **kw) -> MultitaskResEncUNet:
    torch.manual_seed(0)
    return MultitaskResEncUNet(**TOPOLOGIES[name], **kw)


@pytest.mark.parametrize(
    ("name", "size"),
    [("iso3d", (16, 16, 24)), ("iso3d", (8, 32, 16)), ("aniso3d", (8, 24, 32)), ("plain2d", (20, 12))],
)
@pytest.mark.parametrize("head", ["attention", "pool"])
def test_output_shapes(name: str, size: tuple[int, ...], head: str) -> None:
    net = _net(name, head=head, num_input_channels=2)
    strides = net.arch.strides
    out = net(torch.randn(2, 2, *size))
    assert len(out.seg) == net.arch.n_stages - 1
    expect = list(size)
    shapes = []
    for s in strides[:-1]:
        expect = [e // v for e, v in zip(expect, s)]
        shapes.append((2, 3, *expect))
    # seg[0] is full resolution: the first stride is 1 everywhere in these topologies
    assert [tuple(t.shape) for t in out.seg] == shapes
    assert out.cls is not None and out.cls.shape == (2, 3)

    net.deep_supervision = False
    out1 = net.eval()(torch.randn(1, 2, *size))
    assert len(out1.seg) == 1 and out1.seg[0].shape == (1, 3, *size)


def test_no_head_and_input_checks() -> None:
    net = _net("iso3d", num_subtypes=0)
    out = net(torch.randn(1, 1, 16, 16, 16))
    assert out.cls is None and net.head is None
    assert not any(k.startswith("head.") for k in net.state_dict())
    with pytest.raises(ValueError, match="divisible by"):
        net(torch.randn(1, 1, 12, 16, 16))
    with pytest.raises(ValueError, match="expected input"):
        net(torch.randn(1, 2, 16, 16, 16))
    with pytest.raises(ValueError, match="num_subtypes"):
        _net("iso3d", num_subtypes=1)
    with pytest.raises(ValueError, match="head kind"):
        _net("iso3d", head="transformer")


def test_deep_supervision_off_gives_same_full_res_logits() -> None:
    net = _net("aniso3d").eval()
    x = torch.randn(1, 1, 8, 16, 16)
    with torch.no_grad():
        a = net(x)
        net.deep_supervision = False
        b = net(x)
    torch.testing.assert_close(a.seg[0], b.seg[0])
    torch.testing.assert_close(a.cls, b.cls)


@pytest.mark.parametrize("head", ["attention", "pool"])
def test_gradients_reach_both_heads_and_encoder(head: str) -> None:
    net = _net("aniso3d", head=HeadConfig(kind=head, hidden=16, dropout=0.0))
    x = torch.randn(2, 1, 8, 16, 16)
    seg = torch.randint(0, 3, (2, 1, 8, 16, 16))
    sub = torch.tensor([0, 2])
    loss = MultitaskLoss(LossConfig(lambda_cls=1.0), class_counts=[3, 4, 5])

    def grads(which: str) -> dict[str, torch.Tensor | None]:
        net.zero_grad(set_to_none=True)
        out = net(x)
        part = loss.seg_loss(out.seg, seg) if which == "seg" else loss.cls_loss(out.cls, sub)
        part.backward()
        return {k: p.grad for k, p in net.named_parameters()}

    g_seg = grads("seg")
    g_cls = grads("cls")
    enc_key = "encoder.stem.convs.0.conv.weight"
    seg_key = "decoder.seg_layers.2.weight"  # full-resolution seg layer (the lowest one has DS weight 0)
    head_key = next(k for k in g_cls if k.startswith("head."))
    # segmentation loss trains encoder and seg layers; classification loss trains encoder and head
    assert g_seg[enc_key] is not None and g_seg[enc_key].abs().sum() > 0
    assert g_seg[seg_key] is not None and g_seg[seg_key].abs().sum() > 0
    assert g_cls[enc_key] is not None and g_cls[enc_key].abs().sum() > 0
    assert g_cls[head_key] is not None and g_cls[head_key].abs().sum() > 0
    assert g_seg[head_key] is None  # the head is not part of the segmentation loss
    assert g_seg["decoder.seg_layers.0.weight"] is None  # lowest deep-supervision output has weight 0


def _plans(arch_kwargs: dict) -> dict:
    return {
        "configurations": {
            "3d_fullres": {
                "architecture": {
                    "network_class_name": "dynamic_network_architectures.architectures.unet.ResidualEncoderUNet",
                    "arch_kwargs": arch_kwargs,
                    "_kw_requires_import": ["conv_op", "norm_op", "dropout_op", "nonlin"],
                }
            },
            "3d_lowres": {"inherits_from": "3d_fullres", "patch_size": [8, 8, 8]},
        }
    }


BASE_KW = resenc_architecture(
    [4, 8, 8], [[1, 3, 3], [3, 3, 3], [3, 3, 3]], [[1, 1, 1], [1, 2, 2], [2, 2, 2]], [1, 1, 1], [1, 1]
)["arch_kwargs"]


def test_arch_from_plans_and_inheritance() -> None:
    a = arch_from_plans(_plans(BASE_KW), "3d_lowres")
    assert a == ArchConfig(
        n_stages=3,
        features_per_stage=(4, 8, 8),
        kernel_sizes=((1, 3, 3), (3, 3, 3), (3, 3, 3)),
        strides=((1, 1, 1), (1, 2, 2), (2, 2, 2)),
        n_blocks_per_stage=(1, 1, 1),
        n_conv_per_stage_decoder=(1, 1),
    )
    net = MultitaskResEncUNet.from_plans(_plans(BASE_KW), head="pool")
    assert net.downsampling_factor == (2, 4, 4)


@pytest.mark.parametrize(
    ("key", "value", "match"),
    [
        ("conv_op", "torch.nn.modules.conv.Conv1d", "conv_op"),
        ("norm_op", "torch.nn.BatchNorm3d", "norm_op"),
        ("norm_op", "torch.nn.modules.instancenorm.InstanceNorm2d", "norm_op"),
        ("nonlin", "torch.nn.GELU", "nonlin"),
        ("dropout_op", "torch.nn.Dropout3d", "dropout_op"),
        ("features_per_stage", [4, 8], "features_per_stage"),
        ("kernel_sizes", [[2, 3, 3], [3, 3, 3], [3, 3, 3]], "odd"),
    ],
)
def test_plans_with_unsupported_values_are_refused(key: str, value: object, match: str) -> None:
    kw = copy.deepcopy(BASE_KW)
    kw[key] = value
    with pytest.raises(ValueError, match=match):
        MultitaskResEncUNet.from_plans(_plans(kw))


def test_plans_structure_errors() -> None:
    with pytest.raises(ValueError, match="not in the plans"):
        arch_from_plans(_plans(BASE_KW), "2d")
    plans = _plans(BASE_KW)
    plans["configurations"]["3d_fullres"]["architecture"]["network_class_name"] = "x.PlainConvUNet"
    with pytest.raises(ValueError, match="PlainConvUNet"):
        arch_from_plans(plans)


def _randomised(net: MultitaskResEncUNet) -> MultitaskResEncUNet:
    """Random values in every weight (the init zeroes the last norm of each block, hiding its path)."""
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.2)
    return net.eval()


@pytest.mark.parametrize(
    ("name", "size"), [("iso3d", (16, 16, 24)), ("aniso3d", (8, 24, 32)), ("plain2d", (20, 12))]
)
@pytest.mark.parametrize("head", ["attention", "pool"])
def test_fused_inference_act_gives_the_same_outputs(name: str, size: tuple[int, ...], head: str) -> None:
    net = _randomised(_net(name, head=head))
    keys = set(net.state_dict())
    x = torch.randn(2, 1, *size)
    with torch.inference_mode():
        want = net(x)
        net.fuse_inference("cpu")
        got = net(x)
    assert set(net.state_dict()) == keys  # nothing new to save or load
    for w, g in zip(want.seg, got.seg):
        torch.testing.assert_close(g, w, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(got.cls, want.cls, rtol=1e-4, atol=1e-4)
    net.fuse_inference(None)  # back to the torch modules: the same outputs as before, bit for bit
    with torch.inference_mode():
        again = net(x)
    assert all(torch.equal(a, w) for a, w in zip(again.seg, want.seg))


@pytest.mark.parametrize(
    ("name", "size"), [("iso3d", (16, 16, 24)), ("aniso3d", (8, 24, 32)), ("plain2d", (20, 12))]
)
def test_channels_last_fused_inference_matches_contiguous(name: str, size: tuple[int, ...]) -> None:
    """Every layer runs channels-last; the logits equal the contiguous fused path's to float32 rounding and
    come back contiguous."""
    net = _randomised(_net(name, head="attention"))
    keys = set(net.state_dict())
    x = torch.randn(2, 1, *size)
    fmt = torch.channels_last_3d if len(size) == 3 else torch.channels_last
    layouts: list[bool] = []

    def record(module, args, out):
        layouts.append(out.is_contiguous(memory_format=fmt) and not out.is_contiguous())

    with torch.inference_mode():
        want = net.fuse_inference("cpu")(x)
        net.fuse_inference("cpu", channels_last=True)
        hooks = [
            m.register_forward_hook(record)
            for m in net.decoder.modules()  # the encoder's modules and the decoder's own
            # not the 1x1 convolutions: on one thread torch runs them through its own path, which writes
            # contiguous outputs (the next fused pass takes either layout)
            if isinstance(m, (BasicBlockD, ConvNormAct))
            or (isinstance(m, (torch.nn.Conv2d, torch.nn.Conv3d)) and max(m.kernel_size) > 1)
        ]
        got = net(x)
        for h in hooks:
            h.remove()
    assert len(layouts) > 10 and all(layouts)  # every convolution, conv block and residual block's output
    assert set(net.state_dict()) == keys
    assert all(s.is_contiguous() for s in got.seg)
    for w, g in zip(want.seg, got.seg):  # the stem's direct kernel and oneDNN sum in other orders
        torch.testing.assert_close(g, w, rtol=2e-5, atol=2e-5)
    torch.testing.assert_close(got.cls, want.cls, rtol=2e-5, atol=2e-5)
    net.fuse_inference("cpu")  # back to contiguous weights: the contiguous path's outputs again
    assert all(p.is_contiguous() for p in net.parameters())
    with torch.inference_mode():
        again = net(x)
    assert all(torch.equal(a, w) for a, w in zip(again.seg, want.seg))
    with pytest.raises(ValueError, match="needs a backend"):
        net.fuse_inference(None, channels_last=True)


def test_winograd_inference_runs_the_3x3_convolutions_through_conv3d_same(monkeypatch) -> None:
    """fuse_inference(winograd=True): the stride-1 3x3x3 / 1x3x3 convolutions go through conv3d_same, whose auto
    takes Winograd from MIN_CHANNELS input channels and MIN_TILES tiles (lowered here so the small test network's
    layers qualify); the logits stay within Winograd's float32 rounding of the oneDNN convolutions'. Strided and
    1x1 convolutions keep the module; without winograd nothing changes."""
    import fastpanc.ops.winograd as W

    net = _randomised(_net("aniso3d", head="attention"))
    x = torch.randn(1, 1, 8, 24, 32)
    calls: list[tuple[int, ...]] = []
    real = W._winograd

    def counting(x, weight, bias, chunk_tiles, tile):
        calls.append(tuple(weight.shape))
        return real(x, weight, bias, chunk_tiles, tile)

    monkeypatch.setattr(W, "_winograd", counting)
    monkeypatch.setattr(W, "MIN_CHANNELS", 1)
    monkeypatch.setattr(W, "MIN_TILES", 1)
    eligible = [
        m
        for m in net.modules()
        if isinstance(m, ConvNormAct) and m.conv.stride == (1, 1, 1) and m.conv.kernel_size != (1, 1, 1)
    ]
    with torch.inference_mode():
        want = net.fuse_inference("cpu", channels_last=True)(x)
        assert not calls and all(m.fused_conv is None for m in eligible)  # winograd is asked for, not default
        net.fuse_inference("cpu", channels_last=True, winograd=True)
        assert all(m.fused_conv == "auto" for m in eligible)
        assert all(
            m.fused_conv is None for m in net.modules() if isinstance(m, ConvNormAct) and m not in eligible
        )
        got = net(x)
    assert len(calls) == len(eligible) and (12, 12, 3, 3, 3) in calls and (4, 4, 1, 3, 3) in calls
    for w, g in zip(want.seg, got.seg):
        torch.testing.assert_close(g, w, rtol=0, atol=1e-3 * w.abs().max().item())
    torch.testing.assert_close(got.cls, want.cls, rtol=1e-3, atol=1e-3)
    calls.clear()
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        net(x)  # autocast: the bfloat16 oneDNN convolutions, never Winograd
    with torch.no_grad():
        net.fuse_training("cpu")(x)  # training fusion leaves the convolutions to the modules
    assert not calls and all(m.fused_conv is None for m in eligible)
    with pytest.raises(ValueError, match="needs channels_last"):
        net.fuse_inference("cpu", winograd=True)


def test_channels_last_under_bf16_autocast() -> None:
    net = _randomised(_net("aniso3d", num_subtypes=0))
    x = torch.randn(1, 1, 8, 24, 32)
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        want = net.fuse_inference("cpu")(x).seg[0].float()
        got = net.fuse_inference("cpu", channels_last=True)(x).seg[0]
    assert got.dtype == torch.bfloat16 and got.is_contiguous()
    scale = want.abs().max().item()
    assert (got.float() - want).abs().max().item() <= 0.05 * scale
    assert (got.float().argmax(1) == want.argmax(1)).float().mean().item() >= 0.97


def test_fused_inference_act_under_bf16_autocast() -> None:
    """bfloat16 activations stay bfloat16 through the fused pass; the logits stay within
    bf16 rounding of the unfused autocast forward."""
    net = _randomised(_net("aniso3d", num_subtypes=0))
    x = torch.randn(1, 1, 8, 24, 32)
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        want = net(x).seg[0].float()
        net.fuse_inference("cpu")
        got = net(x).seg[0]
        stem = net.encoder.stem(x)
    assert stem.dtype == torch.bfloat16 and got.dtype == torch.bfloat16
    scale = want.abs().max().item()
    assert (got.float() - want).abs().max().item() <= 0.05 * scale
    assert (got.float().argmax(1) == want.argmax(1)).float().mean().item() >= 0.97


def test_fused_inference_act_is_for_inference_only() -> None:
    net = _randomised(_net("iso3d")).train()
    net.fuse_inference("cpu")
    with pytest.raises(BackendUnavailableError, match="no backward"):
        net(torch.randn(1, 1, 16, 16, 16))
    net.fuse_inference(None)
    out = net(torch.randn(1, 1, 16, 16, 16))
    out.seg[0].sum().backward()
    assert net.encoder.stem.convs[0].conv.weight.grad is not None


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU on this machine")
def test_fused_inference_on_cuda_in_float16() -> None:
    """On a GPU the norm pass runs in Triton (pooling and upsampling as torch ops): the same labels as
    torch's modules under float16 autocast, within fp16 rounding."""
    net = _randomised(_net("aniso3d", num_subtypes=0)).cuda()
    x = torch.randn(1, 1, 8, 24, 32, device="cuda")
    with torch.inference_mode(), torch.autocast("cuda", dtype=torch.float16):
        want = net(x).seg[0].float()
        net.fuse_inference("auto")
        got = net(x).seg[0].float()
    scale = want.abs().max().item()
    assert (got - want).abs().max().item() <= 0.02 * scale
    assert (got.argmax(1) == want.argmax(1)).float().mean().item() >= 0.99


def test_channels_last_inference_convolutions_go_to_the_narrow_kernel_and_onednn(monkeypatch) -> None:
    """Channels-last inference: the one-channel stem through conv3d_narrow's C++ kernel, every other 3D block
    convolution through oneDNN, no 3x3 one through torch's native kernel (which batch-1 float32 calls with
    N * C * D * H <= 20480, as every layer of this small network, would take); the logits stay those of the
    contiguous fused network to float32 rounding. Autocast keeps the modules."""
    from torch.profiler import ProfilerActivity, profile

    import fastpanc.ops.conv_narrow as N

    net = _randomised(_net("aniso3d", head="attention"))
    x = torch.randn(1, 1, 8, 24, 32)
    calls: list[tuple[int, ...]] = []
    real = N._direct

    def counting(x, weight, bias):
        calls.append(tuple(weight.shape))
        return real(x, weight, bias)

    monkeypatch.setattr(N, "_direct", counting)
    with torch.inference_mode():
        want = net.fuse_inference("cpu")(x)
        assert not calls
        net.fuse_inference("cpu", channels_last=True)
        stems = [m for m in net.modules() if isinstance(m, ConvNormAct) and m.narrow_conv is not None]
        assert len(stems) == 1 and stems[0].conv.in_channels == 1
        with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
            got = net(x)
    events = prof.key_averages(group_by_input_shape=True)
    native = [e.input_shapes[1] for e in events if e.key == "aten::slow_conv3d_forward"]
    onednn = sum(e.count for e in events if e.key == "aten::mkldnn_convolution")
    assert calls == [tuple(stems[0].conv.weight.shape)]
    # only the 1x1 projections and the decoder's 1x1 upsampling / segmentation layers are left to torch's choice
    assert native and all(tuple(w[2:]) == (1, 1, 1) for w in native)
    assert onednn >= 10
    for w, g in zip(want.seg, got.seg):
        torch.testing.assert_close(g, w, rtol=2e-5, atol=2e-5)
    torch.testing.assert_close(got.cls, want.cls, rtol=2e-5, atol=2e-5)
    calls.clear()
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        assert net(x).seg[0].dtype == torch.bfloat16
    assert not calls  # under autocast the stem is torch's bfloat16 convolution
    net.fuse_training("cpu")
    assert all(
        not m.onednn_conv and m.narrow_conv is None for m in net.modules() if isinstance(m, ConvNormAct)
    )
