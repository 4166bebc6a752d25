"""The local stack's first run: a taken port is named with the flag that chooses another, settings come
from the sample in a fresh clone, and "ready" means the app answers its health check."""

from __future__ import annotations

import json
import socket
import subprocess
import sys

import pytest

from devtools.stack.services import SAMPLE_SETTINGS, ensure_local_settings
from tests.devtools.stack.test_stack_ports import free_ports

TIMEOUT = 120


def run(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", *argv], capture_output=True, text=True, timeout=TIMEOUT)


@pytest.fixture
def taken():
    """A port something already listens on."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        yield listener.getsockname()[1]


@pytest.mark.parametrize(
    "program, flag, others",
    [
        ("devtools.host", "--port", []),
        ("devtools.vault", "--port", ["--token-port", "0"]),
        ("devtools.vault", "--token-port", ["--port", "0"]),
        ("devtools.entra", "--msi-port", ["--port", "0"]),
        ("devtools.stack", "--port", []),
        ("devtools.stack", "--blob-port", []),
    ],
)
def test_each_process_names_the_taken_port_and_the_flag_that_chooses_another(taken, program, flag, others):
    if program == "devtools.stack":  # the stack checks every port before it starts anything
        others = [
            option
            for name, port in zip(("--blob-port", "--vault-port", "--token-port", "--entra-port", "--msi-port", "--port"), free_ports(6))
            if name != flag
            for option in (name, str(port))
        ]
    finished = run(program, flag, str(taken), *others)
    assert finished.returncode == 1
    assert f"port {taken} ({flag}) cannot be listened on" in finished.stderr
    assert f"choose another with {flag}" in finished.stderr
    assert "Traceback" not in finished.stderr + finished.stdout
    assert "ready" not in finished.stdout


def test_a_stack_whose_app_is_not_healthy_says_why_and_stops(tmp_path):
    settings = tmp_path / "local.settings.json"
    settings.write_text(json.dumps({"IsEncrypted": False, "Values": {}}))  # no TRUST_DOMAIN: every call is a 503
    ports = free_ports(6)
    flags = ("--blob-port", "--vault-port", "--token-port", "--entra-port", "--msi-port", "--port")
    finished = run(
        "devtools.stack", "--settings", str(settings), *(option for flag, port in zip(flags, ports) for option in (flag, str(port)))
    )
    assert finished.returncode == 1
    assert "Stack ready" not in finished.stdout
    assert "the app is not healthy (settings)" in finished.stderr and "TRUST_DOMAIN" in finished.stderr
    for port in ports:  # everything it started has stopped
        with socket.create_server(("127.0.0.1", port)):
            pass


def test_a_fresh_clone_gets_its_local_settings_from_the_sample_and_a_made_one_is_kept(tmp_path):
    settings = tmp_path / "local.settings.json"
    assert ensure_local_settings(settings)
    assert settings.read_text() == SAMPLE_SETTINGS.read_text()
    settings.write_text('{"Values": {"TRUST_DOMAIN": "mine.example.org"}}')
    assert not ensure_local_settings(settings)
    assert "mine.example.org" in settings.read_text()
