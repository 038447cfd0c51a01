"""`stylelayer serve` as painters run it: flags, refusal of an open bind without a token, and a real process
on port 0 with the real engine that prints its URL, answers, and stops cleanly on Ctrl+C."""

from __future__ import annotations

import argparse
import re
import signal
import subprocess
import sys
import time

import pytest
import torch
from protocol_helpers import gradient, png_bytes, stylelayer_client

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


def test_real_process_port_zero_prints_url_serves_and_stops_on_sigint(tmp_path) -> None:
    code = "import sys; from stylelayer.cli import main; sys.exit(main(sys.argv[1:]))"
    argv = ["serve", "--port", "0", "--device", "cpu", "--styles-dir", str(tmp_path / "styles"), "--token", "tok"]
    proc = subprocess.Popen(
        [sys.executable, "-u", "-c", code, *argv], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
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
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
