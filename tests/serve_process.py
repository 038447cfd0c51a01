"""`stylelayer serve` as its own process (real engine, CPU), for tests that kill it (kill -9) the way a crash does:
an in-process ServerThread cannot be killed without killing the test."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path


def start_serve(folder: Path, log_name: str = "serve.log", timeout: float = 120) -> tuple[subprocess.Popen, str]:
    """Start `stylelayer serve --port 0` with its data in `folder`; (process, URL) once it listens."""
    code = "import sys; from stylelayer.cli import main; sys.exit(main(sys.argv[1:]))"
    argv = ["serve", "--port", "0", "--device", "cpu", "--data-dir", str(folder / "data")]
    argv += ["--styles-dir", str(folder / "styles")]
    log = folder / log_name
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "-u", "-c", code, *argv], stdout=out, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        match = re.search(r"listening on (http://127\.0\.0\.1:\d+)", log.read_text())
        if match:
            return proc, match.group(1)
        if proc.poll() is not None:
            break
        time.sleep(0.1)
    proc.kill()
    proc.wait()
    raise AssertionError(f"the server did not start: {log.read_text()}")


def kill_when_running(proc: subprocess.Popen, url: str, timeout: float = 120) -> dict:
    """SIGKILL the server once a job has run for a second (past its first iterations, as a crash mid-job would);
    returns {"state": "running", "info": /v1/info then}. Job ids are private to the client that sent the job, so
    the job is seen through /v1/info's counts."""
    import json
    import urllib.request

    deadline = time.monotonic() + timeout
    seen: dict = {}
    running_since = None
    while time.monotonic() < deadline and proc.poll() is None:
        with urllib.request.urlopen(url + "/v1/info", timeout=5) as reply:
            seen = json.loads(reply.read())
        if seen.get("jobs", {}).get("running", 0) >= 1:
            running_since = running_since or time.monotonic()
            if time.monotonic() - running_since >= 1.0:
                proc.kill()
                proc.wait()
                return {"state": "running", "info": seen}
        time.sleep(0.2)
    raise AssertionError(f"no job ran on {url} within {timeout:.0f} s: {seen}")
