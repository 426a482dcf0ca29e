"""The suite's own guards: under CI a missing optional dependency or browser fails naming it; elsewhere it skips."""

import os

import pytest
from conftest import in_ci, require, require_module


def test_a_missing_extra_skips_for_a_user_and_fails_in_ci(monkeypatch):
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="'no_such_extra_module'"):
        require_module("no_such_extra_module")
    monkeypatch.setenv("CI", "true")
    with pytest.raises(
        pytest.fail.Exception, match="the optional dependency 'no_such_extra_module' .* is missing: CI"
    ):
        require_module("no_such_extra_module")
    with pytest.raises(pytest.fail.Exception, match="Debian's chromium .* is missing"):
        require(False, "Debian's chromium (the browser)")
    assert require_module("json").dumps([]) == "[]"


@pytest.mark.parametrize("value, expected", [("true", True), ("1", True), ("false", False), ("0", False), ("", False)])
def test_ci_is_what_the_ci_script_declares(monkeypatch, value, expected):
    monkeypatch.setenv("CI", value)
    assert in_ci() is expected


def test_the_ci_script_declares_ci():
    from conftest import REPO_ROOT

    lines = [line for line in (REPO_ROOT / ".ci" / "run").read_text().splitlines() if not line.startswith("#")]
    assert lines[-2:] == ["export CI=true", "make test"]


def test_the_hub_is_offline_whatever_the_caller_set():
    assert os.environ["HF_HUB_OFFLINE"] == "1"  # conftest forces it, not setdefault
