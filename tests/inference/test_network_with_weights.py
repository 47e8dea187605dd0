"""The predictor builds its networks on the meta device and takes the checkpoint's tensors: no random
initialisation is drawn only to be overwritten, and the result is the network a copy into it would give."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import fastpanc.model.network as network_module
from fastpanc import Predictor
from fastpanc.inference.predictor import network_with_weights
from fastpanc.model.network import MultitaskResEncUNet


def _build(plans: dict):
    return lambda: MultitaskResEncUNet.from_plans(plans, num_subtypes=3, deep_supervision=False).eval()


def test_same_network_and_outputs_as_a_copy_into_an_initialised_one(builders):
    plans = builders.tiny_plans()
    torch.manual_seed(0)
    ref = _build(plans)()
    with torch.no_grad():  # weights unlike any initialisation (the zeroed last norms of the blocks included)
        for p in ref.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    state = ref.state_dict()
    net = network_with_weights(_build(plans), state)
    assert list(net.state_dict()) == list(state)
    for k, v in net.state_dict().items():
        assert v.device.type == "cpu" and v.dtype == state[k].dtype and torch.equal(v, state[k]), k
    assert all(p.requires_grad for p in net.parameters())  # as the module built them: the trainer may go on
    x = torch.randn(1, 1, 16, 32, 32)
    with torch.no_grad():
        a, b = ref(x), net(x)
    assert torch.equal(a.seg[0], b.seg[0]) and torch.equal(a.cls, b.cls)


def test_no_weights_are_drawn_on_the_meta_device(builders, monkeypatch):
    def drawn(module):
        raise AssertionError("a random initialisation was drawn")

    monkeypatch.setattr(network_module, "_init_weights", drawn)
    state = {k: torch.zeros(v.shape) for k, v in _meta_state(builders.tiny_plans()).items()}
    net = network_with_weights(_build(builders.tiny_plans()), state)
    assert all(torch.count_nonzero(p) == 0 for p in net.parameters())
    with pytest.raises(AssertionError, match="drawn"):  # a real device still initialises
        _build(builders.tiny_plans())()


def _meta_state(plans: dict) -> dict[str, torch.Tensor]:
    with torch.device("meta"):
        return _build(plans)().state_dict()


def test_floating_weights_take_the_modules_dtype(builders):
    plans = builders.tiny_plans()
    torch.manual_seed(1)
    # a checkpoint in float64 (the state dict names some parameters twice: nnU-Net's aliases)
    state = {k: v.double() for k, v in _build(plans)().state_dict().items()}
    net = network_with_weights(_build(plans), state)
    assert {p.dtype for p in net.parameters()} == {torch.float32}
    k = next(iter(state))
    assert torch.equal(net.state_dict()[k], state[k].float())


def test_a_missing_weight_is_an_error(builders):
    plans = builders.tiny_plans()
    state = {k: torch.zeros(v.shape) for k, v in _meta_state(plans).items()}
    missing = sorted(state)[0]
    del state[missing]
    with pytest.raises(RuntimeError, match="Missing key"):
        network_with_weights(_build(plans), state)


def test_a_mis_shaped_weight_is_an_error_naming_the_checkpoint():
    state = {"weight": torch.ones(3, 2), "bias": torch.zeros(2)}
    with pytest.raises(RuntimeError, match=r"(?s)^model_y: .*size mismatch for weight"):
        network_with_weights(lambda: nn.Linear(2, 2), state, "model_y")


class _WithScratch(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(2, 2)
        self.register_buffer("scratch", torch.zeros(3), persistent=False)


def test_a_tensor_the_checkpoint_does_not_set_is_named():
    state = {"lin.weight": torch.ones(2, 2), "lin.bias": torch.zeros(2)}
    with pytest.raises(RuntimeError, match=r"model_x: .*does not set \(scratch\)"):
        network_with_weights(_WithScratch, state, "model_x")


def test_predictor_networks_hold_the_checkpoints_weights(fastpanc_model, nnunet_model):
    for folder in (fastpanc_model, nnunet_model):
        p = Predictor(folder, folds=[0], config=None)
        (state,) = p.model.states
        net = p.networks[0]
        for k, v in net.state_dict().items():
            assert not v.is_meta and torch.equal(v, state[k].to(v.dtype)), (folder, k)
