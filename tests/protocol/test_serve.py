"""`stylelayer serve` as painters run it: flags, refusal of an open bind without a token, and a real process
on port 0 with the real engine that prints its URL, answers, and stops cleanly on Ctrl+C."""

from __future__ import annotations

import argparse
import os
import re
import signal
import subprocess
import sys
import time

import pytest
import torch
from protocol_helpers import FakeEngine, gradient, png_bytes, stylelayer_client

from stylelayer.api import serve


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    serve.add_arguments(parser)
    return parser.parse_args(argv)


def test_defaults_are_loopback_and_8765() -> None:
    args = parse()
    assert (args.host, args.port, args.device, args.weights, args.max_queue) == ("127.0.0.1", 8765, "auto", "caffe", 8)


@pytest.mark.parametrize("host", ["0.0.0.0", "192.168.1.20", "::"])
def test_non_loopback_without_token_is_refused(host, capsys, monkeypatch) -> None:
    monkeypatch.delenv("STYLELAYER_TOKEN", raising=False)
    assert serve.run(parse("--host", host)) == 2
    assert "--token" in capsys.readouterr().err


def test_loopback_names() -> None:
    assert all(serve.is_loopback(h) for h in ("127.0.0.1", "localhost", "::1", "[::1]", "127.5.5.5"))
    assert not any(serve.is_loopback(h) for h in ("0.0.0.0", "::", "10.0.0.1", "example.com"))


def test_absent_device_is_refused(capsys) -> None:
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    assert serve.run(parse("--device", "cuda")) == 2
    assert "cuda" in capsys.readouterr().err


def test_a_taken_port_is_one_clear_line(tmp_path, capsys) -> None:
    """Another program on the port: exit 2 with a line naming host and port, not waitress's traceback."""
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        argv = ("--port", str(port), "--device", "cpu", "--data-dir", str(tmp_path / "data"))
        assert serve.run(parse(*argv, "--styles-dir", str(tmp_path / "styles"))) == 2
    err = capsys.readouterr().err
    assert f"cannot listen on 127.0.0.1 port {port}" in err and "Address already in use" in err
    assert "Traceback" not in err


def test_real_process_port_zero_prints_url_serves_and_stops_on_sigint(tmp_path) -> None:
    code = "import sys; from stylelayer.cli import main; sys.exit(main(sys.argv[1:]))"
    argv = [
        "serve",
        "--port",
        "0",
        "--device",
        "cpu",
        "--styles-dir",
        str(tmp_path / "styles"),
        "--data-dir",
        str(tmp_path / "data"),
    ]
    env = {**os.environ, "STYLELAYER_TOKEN": "tok"}  # the token never on the command line
    proc = subprocess.Popen(
        [sys.executable, "-u", "-c", code, *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    try:
        lines = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            assert line, f"server exited early: {''.join(lines)}"
            lines.append(line)
            match = re.fullmatch(r"stylelayer server listening on (http://127\.0\.0\.1:(\d+))\n", line)
            if match:
                break
        assert match and int(match.group(2)) > 0, lines
        client = stylelayer_client.StylelayerClient(match.group(1), token="tok")
        assert client.health()["engine"] == "ready"
        assert client.info()["weights"] == "caffe"
        client.add_style("s", png_bytes(gradient(24, 24)))
        assert (tmp_path / "styles").is_dir() and len(client.styles()) == 1
        assert (tmp_path / "data" / "jobs.sqlite3").is_file()
        with pytest.raises(stylelayer_client.StylelayerError) as err:
            stylelayer_client.StylelayerClient(match.group(1)).health()
        assert err.value.status == 401
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_token_from_environment_file_or_flag(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("STYLELAYER_TOKEN", "from-env")
    assert serve.read_token(parse()) == "from-env"
    token_file = tmp_path / "token"
    token_file.write_text("from-file\n")
    token_file.chmod(0o600)
    assert serve.read_token(parse("--token-file", str(token_file))) == "from-file"
    assert capsys.readouterr().err == ""
    assert serve.read_token(parse("--token", "on-the-command-line")) == "on-the-command-line"
    assert "visible to every user" in capsys.readouterr().err  # still works, with a warning
    monkeypatch.delenv("STYLELAYER_TOKEN")
    assert serve.read_token(parse()) is None


def test_token_file_readable_by_others_is_warned_about(tmp_path, capsys) -> None:
    if os.name != "posix":
        pytest.skip("file modes are POSIX")
    token_file = tmp_path / "token"
    token_file.write_text("t")
    token_file.chmod(0o644)
    assert serve.read_token(parse("--token-file", str(token_file))) == "t"
    assert "chmod 600" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "problem"),
    [
        (["--token-file", "{missing}"], "cannot read --token-file"),
        (["--token-file", "{empty}"], "is empty"),
        (["--token-file", "{empty}", "--token", "t"], "not both"),
        (["--max-queue", "0"], "--max-queue must be at least 1"),
        (["--keep-results", "0"], "--keep-results must be at least 1"),
        (["--result-hours", "nan"], "--result-hours must be at least 0"),
        (["--result-mb", "-1"], "--result-mb must be at least 0"),
    ],
)
def test_unusable_settings_exit_2_before_loading(tmp_path, capsys, monkeypatch, argv, problem) -> None:
    monkeypatch.setattr(serve, "StyleEngine", lambda **kw: pytest.fail("the engine must not load"))
    (tmp_path / "empty").write_text("  \n")
    argv = [a.format(missing=tmp_path / "missing", empty=tmp_path / "empty") for a in argv]
    assert serve.run(parse(*argv, "--data-dir", str(tmp_path / "data"))) == 2
    assert problem in capsys.readouterr().err


class ConfigSeen(Exception):
    """Raised by the stand-in create_app below, carrying the config `serve` built."""


def test_data_dir_and_result_budget_flags_reach_the_config(tmp_path, monkeypatch) -> None:
    def fake_create_app(config, engine, workers=None, store=None):
        assert store is not None and store.directory == tmp_path / "d"  # opened (checked) before the engine
        store.close()
        raise ConfigSeen(config)

    monkeypatch.setattr(serve, "StyleEngine", lambda **kw: FakeEngine())
    monkeypatch.setattr(serve, "resolve_device", lambda device: device)
    monkeypatch.setattr(serve, "create_app", fake_create_app)
    args = parse("--data-dir", str(tmp_path / "d"), "--keep-results", "7", "--result-hours", "2", "--result-mb", "3")
    with pytest.raises(ConfigSeen) as err:
        serve.run(args)
    seen = err.value.args[0]
    assert seen["data_dir"] == str(tmp_path / "d") and seen["keep_results"] == 7
    assert seen["result_ttl"] == 7200 and seen["result_bytes"] == 3 * 1024**2


def test_default_data_dir_is_in_the_user_data_folder(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    monkeypatch.setattr(sys, "platform", "linux")
    assert serve.default_data_dir() == tmp_path / "xdg" / "stylelayer" / "jobs"
