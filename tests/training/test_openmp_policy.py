"""The CLI's OpenMP wait policy: passive by default, the runtime's default for single-process training."""

from __future__ import annotations

import os

import pytest

from fastpanc import cli


@pytest.mark.parametrize(
    ("command", "environ", "want"),
    [
        ("train", {}, None),  # single-process training keeps the runtime's default (spin, then sleep)
        ("train", {"WORLD_SIZE": "1"}, None),
        ("train", {"WORLD_SIZE": "2"}, "PASSIVE"),  # torchrun processes share the cores
        ("predict", {}, "PASSIVE"),
        ("preprocess", {}, "PASSIVE"),
        ("demo", {}, "PASSIVE"),
        (None, {}, "PASSIVE"),
        ("train", {"OMP_WAIT_POLICY": "PASSIVE"}, None),  # the user's choice is kept
        ("predict", {"OMP_WAIT_POLICY": "ACTIVE"}, None),
    ],
)
def test_openmp_wait_policy(command, environ, want):
    assert cli.openmp_wait_policy(command, environ) == want


def test_main_sets_the_policy_for_the_parsed_command(monkeypatch, tmp_path):
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    # a missing preprocessed folder: the command fails with a user error after the policy was chosen
    rc = cli.main(["train", str(tmp_path / "missing"), "-o", str(tmp_path / "model")])
    assert rc != 0
    assert "OMP_WAIT_POLICY" not in os.environ
    rc = cli.main(["-v", "train", str(tmp_path / "missing"), "-o", str(tmp_path / "model")])
    assert rc != 0 and "OMP_WAIT_POLICY" not in os.environ
    assert cli.main(["info", "--json"]) == 0
    assert os.environ["OMP_WAIT_POLICY"] == "PASSIVE"
