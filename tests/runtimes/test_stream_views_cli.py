"""`edgecv predict --serve` / `--show`: the view sinks wired into the CLI's stream."""

from __future__ import annotations

import socket
import sys
from pathlib import Path

from typer.testing import CliRunner

sys.path.insert(0, str(Path(__file__).resolve().parent / "servers"))
from server_process import free_port as _free_port  # noqa: E402

from edgecv.cli import app  # noqa: E402


def test_serve_runs_the_stream_and_releases_the_port(toy_artifact: Path, toy_video: Path) -> None:
    port = _free_port()
    result = CliRunner().invoke(app, ["predict", str(toy_artifact), "--source", str(toy_video),
                                      "--serve", f"127.0.0.1:{port}"])
    assert result.exit_code == 0, result.output
    assert f"watch at http://127.0.0.1:{port}" in result.output and "12 frames" in result.output
    with socket.socket() as sock:  # the server is gone: the port binds again
        sock.bind(("127.0.0.1", port))


def test_show_without_a_display_says_what_is_missing(toy_artifact: Path, toy_video: Path, monkeypatch) -> None:
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    result = CliRunner().invoke(app, ["predict", str(toy_artifact), "--source", str(toy_video), "--show"])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "display" in result.output.lower()


def test_capture_options_reach_the_live_capture(toy_artifact: Path) -> None:
    """--give-up-after / --stall-timeout go to open_capture, which checks them before connecting."""
    url = f"http://127.0.0.1:{_free_port()}/stream.mjpg"
    for option, value in (("--give-up-after", "-1"), ("--stall-timeout", "0")):
        result = CliRunner().invoke(app, ["predict", str(toy_artifact), "--source", url, option, value])
        assert result.exit_code == 2 and "Traceback" not in result.output
        assert option.strip("-").replace("-", "_") in result.output, result.output
