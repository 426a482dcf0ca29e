"""The `multitask-st` command: its subcommands, the console script, `python -m multitask_st` and the checkout's shims."""

import os
import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path

import pytest

from multitask_st import cli
from multitask_st.cli import app as app_cli


ROOT = Path(__file__).resolve().parents[1]
SHIMS = {"train": "train.py", "push": "push_to_hub.py", "export": "export.py", "app": "app.py"}


def test_the_console_script_is_the_dispatcher():
    (script,) = entry_points(group="console_scripts", name="multitask-st")
    assert script.load() is cli.main


def test_usage_and_an_unknown_command(capsys):
    assert cli.main([]) == 2 and cli.main(["--help"]) == 0
    assert capsys.readouterr().out.count("usage: multitask-st {train,push,export,app,embed,gate,calibrate} ...") == 2
    assert cli.main(["serve"]) == 2
    assert capsys.readouterr().err.endswith(
        "multitask-st: error: unknown command 'serve'; choose from train, push, export, app, embed, gate, calibrate.\n"
    )


@pytest.mark.parametrize("command", list(cli.COMMANDS))
def test_each_subcommand_names_itself(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main([command, "--help"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.startswith(f"usage: multitask-st {command} ")


@pytest.mark.slow  # four interpreters, one of which imports torch
def test_the_checkout_shims_and_python_m_run_the_same_commands():
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    for shim in SHIMS.values():
        result = subprocess.run(
            [sys.executable, shim, "--help"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
        )
        assert result.returncode == 0 and result.stdout.startswith(f"usage: {shim} "), result.stderr
    result = subprocess.run(
        [sys.executable, "-m", "multitask_st", "export", "--help"], env=env, capture_output=True, text=True
    )
    assert result.returncode == 0 and result.stdout.startswith("usage: multitask-st export "), result.stderr


# ------------------------------------------------------------------------------------------- the app's address


def test_the_app_serves_where_the_flags_then_gradios_variables_say():
    env = {"GRADIO_SERVER_NAME": "0.0.0.0", "GRADIO_SERVER_PORT": "8123"}
    assert app_cli.server_address(None, None, {}) == ("127.0.0.1", 7860)
    assert app_cli.server_address(None, None, env) == ("0.0.0.0", 8123)
    assert app_cli.server_address("localhost", 9000, env) == ("localhost", 9000)
    assert app_cli.server_address(None, 9000, env) == ("0.0.0.0", 9000)
    for bad in ("http", "0", "70000", "-1"):
        with pytest.raises(ValueError, match=rf"^GRADIO_SERVER_PORT='{bad}' is not a port number \(1-65535\)"):
            app_cli.server_address(None, None, {"GRADIO_SERVER_PORT": bad})


def test_the_app_command_launches_on_gradios_variables(tmp_path, monkeypatch, capsys):
    serve = pytest.importorskip("multitask_st.app.serve")  # needs gradio
    (tmp_path / "config.json").write_text("{}")
    launched = {}
    monkeypatch.setattr(serve, "build_demo", lambda model, revision, corpus: "demo")
    monkeypatch.setattr(serve, "launch", lambda demo, **kwargs: launched.update(kwargs, demo=demo))
    monkeypatch.setenv("GRADIO_SERVER_NAME", "0.0.0.0")
    monkeypatch.setenv("GRADIO_SERVER_PORT", "8123")
    assert app_cli.main([str(tmp_path), "--no-corpus"]) == 0
    assert launched == {"demo": "demo", "server_name": "0.0.0.0", "server_port": 8123}
    assert "open http://0.0.0.0:8123 " in capsys.readouterr().out
    assert app_cli.main([str(tmp_path), "--no-corpus", "--port", "8200", "--host", "127.0.0.1"]) == 0
    assert launched == {"demo": "demo", "server_name": "127.0.0.1", "server_port": 8200}
    monkeypatch.setenv("GRADIO_SERVER_PORT", "eighty")
    assert app_cli.main([str(tmp_path), "--no-corpus"]) == 1
    assert capsys.readouterr().err == (
        "multitask-st app: error: GRADIO_SERVER_PORT='eighty' is not a port number (1-65535); unset it or pass "
        "--port.\n"
    )
