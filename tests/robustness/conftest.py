"""Fixtures of the robustness suite. The tiny model folders, synthetic CT volumes and the tiny preprocessed
dataset come from the inference and training test helpers (loaded by path: ``--import-mode=importlib``
cannot import another folder's conftest by name), so every suite builds them the same way."""

from __future__ import annotations

import importlib.util
import sys
import types
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parents[1]


def _load(name: str, path: Path) -> types.ModuleType:
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


inference_helpers = _load("_fastpanc_tests_inference_helpers", TESTS / "inference" / "conftest.py")
training_helpers = _load("_fastpanc_tests_training_helpers", TESTS / "training" / "conftest.py")


@pytest.fixture(scope="session")
def inf() -> types.ModuleType:
    """tests/inference/conftest.py: ``tiny_plans``, ``write_fastpanc_folder``, ``synthetic_ct``, ``write_case``."""
    return inference_helpers


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A one-fold multitask fastpanc model folder with random weights (3-stage, 4/8/16 features)."""
    return inference_helpers.write_fastpanc_folder(
        tmp_path_factory.mktemp("robust_models") / "fastpanc", inference_helpers.tiny_plans(), folds=(0,)
    )


@pytest.fixture(scope="session")
def tiny_preprocessed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The trainer tests' tiny preprocessed dataset: 12 cases, 3 of them for validation."""
    return training_helpers.write_preprocessed(tmp_path_factory.mktemp("robust_pre"), [0, 1, 2] * 4, n_val=3)
