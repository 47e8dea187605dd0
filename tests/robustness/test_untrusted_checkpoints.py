"""Untrusted model files: every checkpoint is read with ``torch.load(weights_only=True)``, a pickle that would
run code is refused with an explanation (and its code never runs), and class names in ``plans.json`` are looked
up in a fixed list, never imported."""

from __future__ import annotations

import ast
import json
import pickle
import shutil
import sys
from pathlib import Path

import pytest
import torch

from fastpanc.inference.model_folder import build_nnunet_network, load_model_folder
from fastpanc.inference.predictor import Predictor
from fastpanc.model.network import MultitaskResEncUNet
from fastpanc.model.nnunet_compat import build_from_nnunet_folder, read_checkpoint
from fastpanc.training.checkpoint import load_checkpoint

PACKAGE = Path(__file__).resolve().parents[2] / "fastpanc"


def test_every_torch_load_in_the_package_uses_weights_only_true() -> None:
    calls = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Call):
                f = node.func
                name = f.attr if isinstance(f, ast.Attribute) else getattr(f, "id", "")
                if (
                    name in ("load", "loads")
                    and isinstance(f, ast.Attribute)
                    and getattr(f.value, "id", "")
                    in (
                        "pickle",
                        "cPickle",
                        "dill",
                        "joblib",
                    )
                ):
                    pytest.fail(f"{path}:{node.lineno} unpickles with {f.value.id}.{name}")
                if name == "load" and isinstance(f, ast.Attribute) and getattr(f.value, "id", "") == "torch":
                    kw = {k.arg: k.value for k in node.keywords}
                    ok = isinstance(kw.get("weights_only"), ast.Constant) and kw["weights_only"].value is True
                    calls.append((f"{path.relative_to(PACKAGE.parent)}:{node.lineno}", ok))
                if name == "load" and isinstance(f, ast.Attribute) and getattr(f.value, "id", "") == "np":
                    kw = {k.arg: k.value for k in node.keywords}
                    allow = kw.get("allow_pickle")
                    assert allow is None or (isinstance(allow, ast.Constant) and allow.value is False), (
                        f"{path}:{node.lineno} np.load with allow_pickle"
                    )
    assert calls, "expected the package to load checkpoints somewhere"
    assert [c for c, ok in calls if not ok] == []


class _WritesAFile:
    """Unpickling this runs ``open(marker, "w")``: the file appears only if the pickle's code is executed."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def _malicious_checkpoint(path: Path, marker: Path, template: Path | None = None) -> Path:
    ck = torch.load(template, weights_only=True) if template else {"network_weights": {}}
    ck["logging"] = {"note": _WritesAFile(marker)}
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(ck, path)
    return path


@pytest.fixture()
def evil_model(tmp_path: Path, tiny_model: Path) -> tuple[Path, Path]:
    model = tmp_path / "model"
    shutil.copytree(tiny_model, model)
    marker = tmp_path / "EXECUTED"
    ck = model / "fold_0" / "checkpoint_final.pth"
    _malicious_checkpoint(ck, marker, template=tiny_model / "fold_0" / "checkpoint_final.pth")
    return model, marker


def test_the_malicious_pickle_would_run_code(tmp_path: Path) -> None:
    """Control: without weights_only the test file really is executed, so the refusals below mean something."""
    marker = tmp_path / "EXECUTED"
    path = _malicious_checkpoint(tmp_path / "evil.pth", marker)
    torch.load(path, weights_only=False)
    assert marker.exists()


def test_every_loader_refuses_a_pickle_that_runs_code(tmp_path: Path, evil_model) -> None:
    model, marker = evil_model
    ck = model / "fold_0" / "checkpoint_final.pth"
    loaders = {
        "read_checkpoint": lambda: read_checkpoint(ck),
        "load_model_folder": lambda: load_model_folder(model),
        "Predictor": lambda: Predictor(model, device="cpu"),
        "build_from_nnunet_folder": lambda: build_from_nnunet_folder(model),
        "training load_checkpoint": lambda: load_checkpoint(ck),
    }
    for name, load in loaders.items():
        with pytest.raises(ValueError) as err:
            load()
        msg = str(err.value)
        assert str(ck) in msg, name
        assert "arbitrary unpickling" in msg, (name, msg)
        assert not marker.exists(), f"{name} executed the pickle"
    assert "io.open" in str(pytest.raises(ValueError, read_checkpoint, ck).value)  # names what it asks for


def test_a_legacy_plain_pickle_is_refused(tmp_path: Path) -> None:
    marker = tmp_path / "EXECUTED"
    path = tmp_path / "legacy.pth"
    with path.open("wb") as f:
        pickle.dump({"network_weights": {}, "x": _WritesAFile(marker)}, f, protocol=2)
    for load in (read_checkpoint, load_checkpoint):
        with pytest.raises(ValueError, match="arbitrary unpickling"):
            load(path)
    assert not marker.exists()


def test_truncated_or_foreign_checkpoints_give_one_clear_error(tmp_path: Path, tiny_model: Path) -> None:
    model = tmp_path / "model"
    shutil.copytree(tiny_model, model)
    ck = model / "fold_0" / "checkpoint_final.pth"
    ck.write_bytes(ck.read_bytes()[:5000])
    with pytest.raises(ValueError, match="truncated") as err:
        load_model_folder(model)
    assert str(ck) in str(err.value)
    with pytest.raises(ValueError, match="truncated"):
        load_checkpoint(ck)
    torch.save([1, 2, 3], ck)
    with pytest.raises(ValueError, match="expected a checkpoint dict"):
        load_model_folder(model)


def test_numpy_scalars_in_nnunet_logs_are_accepted(tmp_path: Path, tiny_model: Path) -> None:
    """nnU-Net keeps numpy floats in its checkpoint logs; weights_only plus numpy scalars reads them."""
    import numpy as np

    model = tmp_path / "model"
    shutil.copytree(tiny_model, model)
    ck = model / "fold_0" / "checkpoint_final.pth"
    saved = torch.load(ck, weights_only=True)
    saved["logging"] = {"ema_fg_dice": [np.float64(0.5), np.float32(0.25)], "epoch_end_timestamps": [1.0]}
    torch.save(saved, ck)
    assert load_model_folder(model).states[0].keys() == saved["network_weights"].keys()


IMPORT_TRAP = """
from pathlib import Path
Path({marker!r}).write_text("imported")
def Conv3d(*a, **k): raise SystemExit("called")
ResidualEncoderUNet = Conv3d
"""


@pytest.mark.parametrize(
    "key, value",
    [
        ("network_class_name", "fastpanc_trap_module.ResidualEncoderUNet"),
        ("network_class_name", "os.system"),
        ("conv_op", "fastpanc_trap_module.Conv3d"),
        ("conv_op", "os.system"),
        ("nonlin", "subprocess.Popen"),
        ("norm_op", "builtins.eval"),
    ],
)
def test_plans_class_names_are_never_imported(tmp_path: Path, inf, key: str, value: str, monkeypatch) -> None:
    marker = tmp_path / "IMPORTED"
    (tmp_path / "fastpanc_trap_module.py").write_text(IMPORT_TRAP.format(marker=str(marker)))
    monkeypatch.syspath_prepend(str(tmp_path))
    plans = inf.tiny_plans()
    arch = plans["configurations"]["3d_fullres"]["architecture"]
    if key == "network_class_name":
        arch[key] = value
    else:
        arch["arch_kwargs"][key] = value
    with pytest.raises(ValueError, match="not supported|does not build") as err:
        build_nnunet_network(plans, "3d_fullres", 1, 3)
    assert value in str(err.value)
    # fastpanc's own builder reads only the short class name and builds its ResEnc U-Net, or refuses
    try:
        net = MultitaskResEncUNet.from_plans(plans, num_input_channels=1, num_seg_classes=3, num_subtypes=3)
        assert value.rsplit(".", 1)[-1] in ("ResidualEncoderUNet", "Conv3d") and isinstance(
            net, MultitaskResEncUNet
        )
    except ValueError as exc:
        assert value in str(exc) and "not supported" in str(exc)
    # through the predictor: an nnU-Net folder and a fastpanc folder with these plans
    nn_dir = inf.write_nnunet_folder(tmp_path / "nnunet", inf.tiny_plans())
    (nn_dir / "plans.json").write_text(json.dumps(plans))
    with pytest.raises(ValueError, match="not supported|does not build"):
        Predictor(nn_dir, device="cpu")
    assert not marker.exists() and "fastpanc_trap_module" not in sys.modules
