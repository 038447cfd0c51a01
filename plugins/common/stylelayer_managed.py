"""The local server the plug-ins install, start and stop themselves ("Local (managed)"), for painters with no terminal.

Standard library only, Python 3.8 syntax: it runs inside Krita's and GIMP's own Python. Everything lives in one
install folder in the host's data folder (the host passes it):

    venv/        the server's Python: stylelayer (the wheel this plug-in carries) and PyTorch
    downloads/   PyTorch's wheels while the torch step runs: a Repair after an interrupted download fetches only
                 the files that had not finished (removed once PyTorch is installed)
    pip-cache/   pip's own cache, for the smaller packages (where the index's HTTP headers let pip keep them)
    steps/       one marker per finished install step; an install killed half-way shows as "incomplete" and
                 Repair runs only the steps without a current marker
    data/        the server's job store and style library: outside the venv, so Upgrade and Repair keep them
    install.log  everything the installer and pip printed; server.log what the server printed
    token        the server's token, readable by this user only (0600); it reaches the server as --token-file

The PyTorch build is chosen per platform and hardware from one table, `REQUIREMENTS` (the anchor,
krita-ai-diffusion, keeps such a table too), and can be overridden. Every failure a painter can meet is an
`InstallError` whose message is one sentence saying what happened and what to do.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import platform
import re
import secrets
import shutil
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

PYPI = "https://pypi.org/simple"
PYTHON_MIN = (3, 10)
PYTHON_DOWNLOAD = "https://www.python.org/downloads/"
IDLE_EXIT_MINUTES = 30.0  # a managed server nobody uses stops by itself (GIMP has no "quit" to hook)
PIP_MIN = "pip>=25.1"  # --progress-bar raw (24.1) and --resume-retries (25.1): progress and resumed downloads


@dataclass(frozen=True)
class Requirements:
    """One row of the table: what to install for a platform and a backend."""

    platform: str  # "windows", "macos-arm64", "macos-x86_64", "linux"
    backend: str  # "cuda", "mps", "cpu"
    index: str  # where pip takes PyTorch from (PYPI: pip's own configured index)
    packages: tuple[str, ...]
    download_mb: int  # approximate download, shown before Install
    python_max: tuple[int, int] = (3, 13)  # the newest Python this PyTorch has wheels for

    def describe(self) -> str:
        where = "PyPI" if self.index == PYPI else self.index
        packages = ", ".join(self.packages)
        return f"PyTorch for {BACKEND_NAMES[self.backend]} ({packages} from {where}, about {_size(self.download_mb)})"


BACKEND_NAMES = {"cuda": "NVIDIA CUDA", "mps": "Apple Metal (MPS)", "cpu": "the CPU"}
_TORCH = ("torch>=2.4", "torchvision>=0.19")

# The one table. PyPI's Linux torch is the CUDA build and PyPI's Windows torch the CPU build; PyTorch's own index
# has the others. PyTorch stopped releasing for Intel Macs after 2.2.2 (which needs NumPy 1 and Python <= 3.12).
REQUIREMENTS: dict[tuple[str, str], Requirements] = {
    (r.platform, r.backend): r
    for r in (
        Requirements("windows", "cuda", "https://download.pytorch.org/whl/cu128", _TORCH, 3300),
        Requirements("windows", "cpu", PYPI, _TORCH, 260),
        Requirements("linux", "cuda", PYPI, _TORCH, 3500),
        Requirements("linux", "cpu", "https://download.pytorch.org/whl/cpu", _TORCH, 200),
        Requirements("macos-arm64", "mps", PYPI, _TORCH, 90),
        Requirements("macos-arm64", "cpu", PYPI, _TORCH, 90),
        Requirements(
            "macos-x86_64", "cpu", PYPI, ("torch==2.2.2", "torchvision==0.17.2", "numpy<2"), 170, python_max=(3, 12)
        ),
    )
}


def _size(mb: float) -> str:
    return f"{mb / 1000:.1f} GB" if mb >= 1000 else f"{mb:.0f} MB"


class InstallError(Exception):
    """A failure the painter can act on: str() is one sentence with what happened and what to do."""


# ---- platform and hardware ---------------------------------------------------------------------------------------


def platform_key(system: str | None = None, machine: str | None = None) -> str:
    """'windows', 'linux', 'macos-arm64' or 'macos-x86_64'. An Intel Python under Rosetta on Apple Silicon counts
    as arm64: the Mac can run the native build, which has the GPU (MPS)."""
    system = (system or platform.system()).lower()
    if system.startswith("win"):
        return "windows"
    if system != "darwin":
        return "linux"
    if machine is None:
        machine = "arm64" if platform.machine() == "arm64" or _rosetta() else platform.machine()
    return "macos-arm64" if machine in ("arm64", "aarch64") else "macos-x86_64"


def _rosetta() -> bool:
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        out = subprocess.run(["sysctl", "-n", "sysctl.proc_translated"], capture_output=True, text=True, timeout=5)
        return out.stdout.strip() == "1"
    return False


@dataclass
class Hardware:
    backend: str
    gpu: str = ""  # "NVIDIA GeForce RTX 3060, 12288 MiB" as nvidia-smi names it


def detect_hardware(platform_name: str | None = None, which: Callable[[str], str | None] = shutil.which) -> Hardware:
    """NVIDIA GPU seen by nvidia-smi -> CUDA (not on a Mac); Apple Silicon -> MPS; else the CPU."""
    platform_name = platform_name or platform_key()
    if platform_name.startswith("macos"):
        return Hardware("mps" if platform_name == "macos-arm64" else "cpu")
    smi = which("nvidia-smi")
    if smi:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            out = subprocess.run(
                [smi, "--query-gpu=name,memory.total", "--format=csv,noheader"],
                capture_output=True,
                text=True,
                timeout=15,
            )
            name = out.stdout.strip().splitlines()[0] if out.returncode == 0 and out.stdout.strip() else ""
            if name:
                return Hardware("cuda", name)
    return Hardware("cpu")


_DETECTED: dict = {}


def detected(platform_name: str) -> Hardware:
    """detect_hardware() once per process: the dialogs ask on every refresh, nvidia-smi takes a while."""
    if platform_name not in _DETECTED:
        _DETECTED[platform_name] = detect_hardware(platform_name)
    return _DETECTED[platform_name]


def requirements_for(platform_name: str, backend: str) -> Requirements:
    """The table's row; InstallError naming the choices when the platform has no such build."""
    row = REQUIREMENTS.get((platform_name, backend))
    if row is None:
        choices = ", ".join(b for (p, b) in REQUIREMENTS if p == platform_name)
        raise InstallError(
            f"There is no PyTorch build for {BACKEND_NAMES.get(backend, backend)} on {platform_name}: choose one of "
            f"{choices} in the dialog's Hardware setting."
        )
    return row


# ---- Python ------------------------------------------------------------------------------------------------------

_PROBE = "import sys, json, venv, ensurepip; print(json.dumps(list(sys.version_info[:3])))"


def python_candidates(path: str | None = None, platform_name: str | None = None) -> list[str]:
    """Pythons to try, best first: $STYLELAYER_PYTHON, then versioned and plain names on PATH, then the places the
    python.org and Homebrew installers use (a painter's PATH often lacks them)."""
    platform_name = platform_name or platform_key()
    found: list[str] = []
    if os.environ.get("STYLELAYER_PYTHON"):
        found.append(os.environ["STYLELAYER_PYTHON"])
    for minor in (13, 12, 11, 10):
        names = [f"python3.{minor}"] if platform_name != "windows" else []
        for name in names:
            exe = shutil.which(name, path=path)
            if exe:
                found.append(exe)
    for name in ("python3", "python"):
        exe = shutil.which(name, path=path)
        if exe and "WindowsApps" not in exe:  # the Microsoft Store stub opens the Store instead of running
            found.append(exe)
    if path is None:
        if platform_name == "windows":
            local = Path(os.environ.get("LOCALAPPDATA", str(Path.home() / "AppData" / "Local")))
            found += [str(p) for p in sorted((local / "Programs" / "Python").glob("Python3*/python.exe"), reverse=True)]
        elif platform_name.startswith("macos"):
            found += [
                str(p)
                for p in sorted(
                    Path("/Library/Frameworks/Python.framework/Versions").glob("3.*/bin/python3"), reverse=True
                )
            ]
            found += ["/opt/homebrew/bin/python3", "/usr/local/bin/python3"]
    return list(dict.fromkeys(found))


@dataclass
class PythonFound:
    path: str
    version: tuple[int, int, int]


def find_python(candidates: Sequence[str] | None = None, python_max: tuple[int, int] = (3, 13)) -> PythonFound:
    """The first candidate with a usable version and the venv module; InstallError with the one sentence otherwise."""
    candidates = python_candidates() if candidates is None else candidates
    too_old, too_new, no_venv = [], [], []
    for exe in candidates:
        try:
            out = subprocess.run([exe, "-c", _PROBE], capture_output=True, text=True, timeout=30)
        except (OSError, subprocess.SubprocessError):
            continue
        if out.returncode != 0:
            if "No module named" in out.stderr and out.stdout.strip() == "":
                no_venv.append(exe)
            continue
        try:
            version = tuple(json.loads(out.stdout.strip().splitlines()[-1]))
        except (ValueError, IndexError):
            continue
        if version[:2] < PYTHON_MIN:
            too_old.append((exe, version))
        elif version[:2] > python_max:
            too_new.append((exe, version))
        else:
            return PythonFound(exe, version)  # type: ignore[arg-type]
    want = f"Python {PYTHON_MIN[0]}.{PYTHON_MIN[1]} to {python_max[0]}.{python_max[1]}"
    get = f"install Python {python_max[0]}.{python_max[1]} from {PYTHON_DOWNLOAD}"
    if platform_key() == "windows":
        get += ' (tick "Add python.exe to PATH")'
    if too_old or too_new:
        exe, version = (too_old or too_new)[0]
        return_why = "too old" if too_old else "too new for PyTorch"
        raise InstallError(
            f"Python {'.'.join(map(str, version))} at {exe} is {return_why}: the server needs {want}; {get}, then press"
            " Install again."
        )
    if no_venv:
        raise InstallError(
            f"The Python at {no_venv[0]} lacks its venv module: install it (Debian and Ubuntu: sudo apt install"
            " python3-venv), then press Install again."
        )
    raise InstallError(f"No Python was found: the server needs {want}; {get}, then press Install again.")


# ---- failures, in one sentence ------------------------------------------------------------------------------------

_NETWORK = (
    "NewConnectionError",
    "Failed to establish a new connection",
    "Temporary failure in name resolution",
    "Name or service not known",
    "nodename nor servname",
    "getaddrinfo failed",
    "Connection refused",
    "ConnectTimeoutError",
    "Read timed out",
    "Could not fetch URL",
    "ProxyError",
)


def is_disk_full(text: str) -> bool:
    return "No space left on device" in text or "[Errno 28]" in text or "There is not enough space" in text


def pip_failure(output: str, returncode: int, index: str, folder: Path, log: Path, need_mb: int) -> InstallError:
    """The one sentence for a failed pip run, from what pip printed."""
    if is_disk_full(output):
        return disk_full(folder, need_mb)
    unreachable = any(marker in output for marker in _NETWORK)
    if not unreachable and ("from versions: none" in output or "No matching distribution" in output):
        unreachable = not index_reachable(index)  # pip says nothing about the network without retries
    if unreachable:
        where = "PyPI" if index == PYPI else index
        return InstallError(
            f"No network: the package index ({where}) could not be reached; check the internet connection (or the"
            " proxy), then press Repair: finished downloads are kept."
        )
    errors = [line.strip() for line in output.splitlines() if line.strip().startswith("ERROR:")]
    last = errors[-1][len("ERROR:") :].strip() if errors else f"pip stopped with exit code {returncode}"
    return InstallError(
        f"Installing failed ({last.rstrip('.')}); the install log {log} has the details, press Repair to try again."
    )


def index_reachable(url: str, timeout: float = 10.0) -> bool:
    """Whether anything answers at the package index's address (any HTTP answer, even an error, counts)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout):
            return True
    except urllib.error.HTTPError:
        return True
    except (OSError, ValueError):
        return False


def disk_full(folder: Path, need_mb: int) -> InstallError:
    return InstallError(
        f"The disk is full: the install needs about {_size(need_mb)} free in {folder}; free some space, then press"
        " Repair: finished steps and downloads are kept."
    )


def check_failure(probe: dict, backend: str) -> InstallError | None:
    """After installing: PyTorch must import and, for CUDA or MPS, see the GPU (else the server would run slowly on
    the CPU without saying why)."""
    if probe.get("error"):
        message = str(probe["error"])
        if any(marker in message.lower() for marker in ("dll", "dlopen", ".so", "winerror 126")):
            return InstallError(
                f"PyTorch is installed but does not load ({message.splitlines()[-1][:160]}); update the graphics"
                " driver (Windows: also install the Microsoft Visual C++ Redistributable), then press Repair."
            )
        return InstallError(f"PyTorch is installed but does not load ({message.splitlines()[-1][:160]}); press Repair.")
    if backend == "cuda" and not probe.get("cuda"):
        return InstallError(
            f"The CUDA build of PyTorch (CUDA {probe.get('cuda_version') or '?'}) cannot see an NVIDIA GPU: update"
            " the NVIDIA driver (nvidia.com/drivers) and press Repair, or choose"
            " Hardware: CPU and press Repair."
        )
    if backend == "mps" and not probe.get("mps"):
        return InstallError(
            "PyTorch cannot use this Mac's GPU (MPS needs macOS 12.3 or newer): update macOS, or choose Hardware: CPU"
            " and press Repair."
        )
    return None


_TORCH_VERSIONS = """
import json
from importlib import metadata
pins = []
for name in ("torch", "torchvision"):
    try:
        pins.append(f"{name}=={metadata.version(name)}")
    except metadata.PackageNotFoundError:
        pass
print(json.dumps(pins))
"""

_TORCH_PROBE = """
import json
try:
    import torch
    info = {"torch": torch.__version__, "cuda_version": torch.version.cuda, "cuda": torch.cuda.is_available(),
            "mps": bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available())}
    if info["cuda"]:
        p = torch.cuda.get_device_properties(0)
        info["gpu"] = f'{p.name}, {p.total_memory / 1024**3:.0f} GB'
    import stylelayer
    info["stylelayer"] = stylelayer.__version__
except Exception as exc:
    info = {"error": f"{type(exc).__name__}: {exc}"}
print(json.dumps(info))
"""


# ---- the install ---------------------------------------------------------------------------------------------------

STEPS = ("python", "venv", "torch", "stylelayer", "check")
STEP_TITLES = {
    "python": "Finding Python",
    "venv": "Creating the server's Python environment",
    "torch": "Installing PyTorch",
    "stylelayer": "Installing the stylelayer server",
    "check": "Checking PyTorch",
}


@dataclass
class Progress:
    """What the dialog shows while installing."""

    step: str
    index: int  # 1-based
    count: int
    file: str = ""
    done_bytes: int = 0
    total_bytes: int = 0

    def text(self) -> str:
        line = f"Installing — {STEP_TITLES[self.step]} (step {self.index} of {self.count})"
        if self.total_bytes:
            percent = 100 * self.done_bytes // self.total_bytes
            line += f": {self.file} {percent}%, {self.done_bytes / 1e6:.0f} of {self.total_bytes / 1e6:.0f} MB"
        elif self.file:
            line += f": {self.file}"
        return line


@dataclass
class Settings:
    """What to install; everything a painter (or a test) may override."""

    wheel: Path  # the stylelayer wheel this plug-in carries
    backend: str | None = None  # None: detect_hardware()
    platform: str | None = None  # None: platform_key()
    index: str | None = None  # None: the table's
    packages: tuple[str, ...] | None = None  # None: the table's
    python: str | None = None  # None: find_python()
    # Reuse the Python's own packages (venv --system-site-packages): for developers and tests that already have
    # PyTorch; a painter's install never uses it.
    system_site_packages: bool = False
    keep_downloads: bool = False  # keep PyTorch's wheels after installing (measuring a warm reinstall)
    extra_pip_args: tuple[str, ...] = ()

    def requirements(self) -> Requirements:
        platform_name = self.platform or platform_key()
        row = requirements_for(platform_name, self.backend or detected(platform_name).backend)
        return Requirements(
            row.platform,
            row.backend,
            self.index if self.index is not None else row.index,
            self.packages if self.packages is not None else row.packages,
            row.download_mb,
            row.python_max,
        )


def env_overrides(env: Mapping[str, str] | None = None) -> dict:
    """Settings a developer or a test sets without the dialog: $STYLELAYER_TORCH_INDEX (an index URL, or `pypi`
    for pip's own) and $STYLELAYER_TORCH_PACKAGES (space-separated requirements) replace the table's."""
    env = os.environ if env is None else env
    found: dict = {}
    if env.get("STYLELAYER_TORCH_INDEX"):
        index = env["STYLELAYER_TORCH_INDEX"].strip()
        found["index"] = PYPI if index.lower() == "pypi" else index
    if env.get("STYLELAYER_TORCH_PACKAGES"):
        found["packages"] = tuple(env["STYLELAYER_TORCH_PACKAGES"].split())
    return found


class Installation:
    """One install folder: its state, the install steps, and Uninstall. Thread-safe enough for one dialog: run
    `install` in a worker thread and read `progress` from the UI thread."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self.venv = self.folder / "venv"
        self.cache = self.folder / "pip-cache"
        self.downloads = self.folder / "downloads"
        self.steps_dir = self.folder / "steps"
        self.data = self.folder / "data"
        self.log_path = self.folder / "install.log"
        self.lock_path = self.folder / "install.lock"
        self.progress: Progress | None = None
        self.cancelled = threading.Event()

    # -- state --
    @property
    def python(self) -> Path:
        return self.venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")

    def marker(self, step: str) -> dict | None:
        try:
            return json.loads((self.steps_dir / f"{step}.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None

    def installing(self) -> bool:
        """Another install (this or another host's process) holds the lock."""
        try:
            pid = int(self.lock_path.read_text(encoding="utf-8").strip() or 0)
        except (OSError, ValueError):
            return False
        return pid_alive(pid)

    def state(self) -> str:
        """'not installed', 'installing', 'incomplete' (steps missing: an install stopped half-way) or 'installed'."""
        if self.installing():
            return "installing"
        done = [step for step in STEPS if self.marker(step) is not None]
        if not done and not self.venv.exists():
            return "not installed"
        return "installed" if len(done) == len(STEPS) and self.python.exists() else "incomplete"

    def installed_info(self) -> dict:
        """What the check step found: torch version, backend, GPU name (empty before an install finished)."""
        return (self.marker("check") or {}).get("result", {})

    def size_bytes(self) -> int:
        total = 0
        for root, _dirs, files in os.walk(self.folder):
            for name in files:
                with contextlib.suppress(OSError):
                    total += os.lstat(os.path.join(root, name)).st_size
        return total

    # -- install / repair / upgrade --
    def install(self, settings: Settings, on_progress: Callable[[Progress], None] | None = None) -> dict:
        """Run every step whose marker is missing or out of date (so this is also Repair and Upgrade); returns the
        check step's result. Raises InstallError with the sentence to show."""
        self.folder.mkdir(parents=True, exist_ok=True)
        self.cancelled.clear()
        self._take_lock()
        try:
            with open(self.log_path, "a", encoding="utf-8") as log:
                self._log = log
                self._log_line(
                    f"==== install {time.strftime('%Y-%m-%d %H:%M:%S')} (stylelayer wheel {settings.wheel.name})"
                )
                try:
                    return self._install(settings, on_progress or (lambda p: None))
                except InstallError as exc:
                    self._log_line(f"FAILED: {exc}")
                    raise
                except OSError as exc:
                    self._log_line(f"FAILED: {exc!r}")
                    if exc.errno == errno.ENOSPC:
                        raise disk_full(self.folder, settings.requirements().download_mb * 3) from None
                    raise InstallError(
                        f"Installing failed ({exc}); the install log {self.log_path} has the details, press Repair to"
                        " try again."
                    ) from None
        finally:
            self._log = None
            with contextlib.suppress(OSError):
                self.lock_path.unlink()

    def _install(self, settings: Settings, on_progress: Callable[[Progress], None]) -> dict:
        req = settings.requirements()
        need_mb = req.download_mb * 3  # the download, unpacked, plus the cache
        if not self.python.exists():  # a venv deleted or broken by hand: Repair makes it (and what follows) again
            (self.steps_dir / "venv.json").unlink(missing_ok=True)
        previous_redone = False
        result: dict = {}
        for number, step in enumerate(STEPS, 1):
            if self.cancelled.is_set():
                raise InstallError("The install was cancelled; press Repair to go on where it stopped.")
            key = self._step_key(step, settings, req)
            marker = self.marker(step)
            if not previous_redone and marker is not None and marker.get("key") == key:
                self._log_line(f"step {step}: already done")
                result = marker.get("result", result)
                continue
            previous_redone = True  # every later step depends on this one: redo them too
            (self.steps_dir / f"{step}.json").unlink(missing_ok=True)
            self.progress = Progress(step, number, len(STEPS))
            on_progress(self.progress)
            self._log_line(f"step {step}: {STEP_TITLES[step]}")
            result = getattr(self, f"_step_{step}")(settings, req, need_mb, on_progress) or {}
            self._mark(step, key, result)
        self.progress = None
        return result

    def _step_key(self, step: str, settings: Settings, req: Requirements) -> str:
        if step == "python":
            return settings.python or "auto"
        if step == "venv":
            return f"system-site-packages={settings.system_site_packages}"
        if step == "torch":
            return json.dumps([req.index, list(req.packages)])
        if step == "stylelayer":
            return _sha256(settings.wheel)
        return req.backend

    def _mark(self, step: str, key: str, result: dict) -> None:
        self.steps_dir.mkdir(parents=True, exist_ok=True)
        path = self.steps_dir / f"{step}.json"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"key": key, "result": result}), encoding="utf-8")
        os.replace(tmp, path)

    def _step_python(self, settings, req, need_mb, on_progress) -> dict:
        found = find_python([settings.python] if settings.python else None, req.python_max)
        self._log_line(f"Python {'.'.join(map(str, found.version))} at {found.path}")
        return {"python": found.path}

    def _step_venv(self, settings, req, need_mb, on_progress) -> dict:
        base = (self.marker("python") or {}).get("result", {}).get("python")
        if not base:
            raise InstallError("The install lost track of its Python; press Repair.")
        if self.venv.exists():
            shutil.rmtree(self.venv)
        command = [base, "-m", "venv", str(self.venv)]
        if settings.system_site_packages:
            command.insert(3, "--system-site-packages")
        self._run(command, PYPI, need_mb)
        # The venv's bundled pip can be years old: a current one shows download progress and resumes downloads.
        self._pip(["install", "--upgrade", PIP_MIN], PYPI, need_mb, on_progress, progress=False)
        return {}

    def _step_torch(self, settings, req, need_mb, on_progress) -> dict:
        """Download every wheel into downloads/ first, then install from there: a download that was interrupted
        (a killed host, a dropped network) goes on with the files it had not finished, whatever the index's HTTP
        caching headers let pip's own cache keep. The folder goes once PyTorch is installed (it is GBs for CUDA)."""
        index_args = [] if req.index == PYPI else ["--index-url", req.index]
        extra = list(settings.extra_pip_args)
        downloads = str(self.downloads)
        # A dropped or stalled connection resumes where it stopped, many times over (pip's default gives up after 5).
        fetch = ["download", "-d", downloads, "--resume-retries", "20", *index_args, *req.packages, *extra]
        self._pip(fetch, req.index, need_mb, on_progress)
        args = ["install", "--no-index", "--find-links", downloads, *req.packages, *extra]
        self._pip(args, req.index, need_mb, on_progress)
        if not settings.keep_downloads:
            shutil.rmtree(self.downloads, ignore_errors=True)
        return {}

    def _step_stylelayer(self, settings, req, need_mb, on_progress) -> dict:
        if not settings.wheel.is_file():
            raise InstallError(
                f"The plug-in is incomplete: its server package {settings.wheel} is missing; install the plug-in again."
            )
        # PyTorch stays the build the torch step chose: stylelayer's own requirements (torch, torchvision) must not
        # let pip swap it for another (e.g. PyPI's CUDA build over the CPU one).
        versions = self._run([str(self.python), "-c", _TORCH_VERSIONS], PYPI, need_mb).strip().splitlines()[-1]
        constraints = self.folder / "torch-constraints.txt"
        constraints.write_text("\n".join(json.loads(versions)) + "\n", encoding="utf-8")
        # --force-reinstall --no-deps: an Upgrade replaces stylelayer even at the same version, and keeps PyTorch.
        self._pip(["install", "--force-reinstall", "--no-deps", str(settings.wheel)], PYPI, need_mb, on_progress)
        args = ["install", "-c", str(constraints), str(settings.wheel), *settings.extra_pip_args]
        self._pip(args, PYPI, need_mb, on_progress)
        return {}

    def _step_check(self, settings, req, need_mb, on_progress) -> dict:
        out = self._run([str(self.python), "-c", _TORCH_PROBE], PYPI, need_mb)
        try:
            probe = json.loads(out.strip().splitlines()[-1])
        except (ValueError, IndexError):
            probe = {"error": out.strip()[-300:] or "no answer"}
        failure = check_failure(probe, req.backend)
        if failure is not None:
            raise failure
        probe["backend"] = req.backend
        return probe

    # -- running pip --
    def _pip(self, args: list[str], index: str, need_mb: int, on_progress, progress: bool = True) -> str:
        command = [str(self.python), "-m", "pip", "--disable-pip-version-check", "--no-input", *args[:1]]
        command += ["--cache-dir", str(self.cache)]
        if progress:
            command += ["--progress-bar", "raw"]
        return self._run(command + args[1:], index, need_mb, on_progress if progress else None)

    def _run(self, command: list[str], index: str, need_mb: int, on_progress=None) -> str:
        """Run `command`, logging every line and turning pip's output into Progress; InstallError on failure."""
        self._log_line("$ " + " ".join(command))
        env = dict(os.environ, PYTHONUNBUFFERED="1", PIP_NO_COLOR="1")
        env.pop("PYTHONPATH", None)  # the host's own modules must not leak into the server's Python
        env.pop("PYTHONHOME", None)
        proc = subprocess.Popen(
            command,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
            encoding="utf-8",
            errors="replace",
            env=env,
            **_no_window(),
        )
        lines: list[str] = []
        assert proc.stdout is not None
        for line in proc.stdout:
            line = line.rstrip("\n")
            lines.append(line)
            if self.cancelled.is_set():
                proc.terminate()
            if not line.startswith("Progress "):
                self._log_line(line)
            if on_progress is not None and self.progress is not None and _track(self.progress, line):
                on_progress(self.progress)
        code = proc.wait()
        output = "\n".join(lines)
        if self.cancelled.is_set():
            raise InstallError("The install was cancelled; press Repair to go on where it stopped.")
        if code != 0:
            raise pip_failure(output, code, index, self.folder, self.log_path, need_mb)
        return output

    def _log_line(self, text: str) -> None:
        log = getattr(self, "_log", None)
        if log is not None:
            log.write(text + "\n")
            log.flush()

    def _take_lock(self) -> None:
        for _ in range(2):
            try:
                fd = os.open(self.lock_path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
            except FileExistsError:
                if self.installing():
                    raise InstallError(
                        "Another install is running (in this or another Krita or GIMP window); wait for it to finish."
                    ) from None
                self.lock_path.unlink(missing_ok=True)  # left by an install that was killed
                continue
            with os.fdopen(fd, "w") as f:
                f.write(str(os.getpid()))
            return
        raise InstallError(f"Could not take the install lock {self.lock_path}; press Repair.")

    def uninstall(self, keep_data: bool = True) -> None:
        """Remove the server's Python, the download cache, the logs and markers; the style library and jobs stay
        unless keep_data is False. Refused while an install runs."""
        if self.installing():
            raise InstallError("An install is running; wait for it to finish before uninstalling.")
        for name in os.listdir(self.folder) if self.folder.is_dir() else []:
            path = self.folder / name
            if keep_data and name == "data":
                continue
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink()


_PROGRESS = re.compile(r"Progress (\d+) of (\d+)")
_DOWNLOADING = re.compile(r"^\s*(Downloading|Using cached|Processing)\s+(\S+)")


def _track(progress: Progress, line: str) -> bool:
    """Update `progress` from one line of pip's output (`--progress-bar raw`); True when it changed."""
    match = _PROGRESS.match(line)
    if match:
        done, total = int(match.group(1)), int(match.group(2))
        if progress.file and total:
            progress.done_bytes, progress.total_bytes = done, total
            return True
        return False
    match = _DOWNLOADING.match(line)
    if match:
        name = match.group(2).rsplit("/", 1)[-1]
        progress.file = name.split("-")[0] if name.endswith(".whl") else name
        progress.done_bytes = progress.total_bytes = 0
        return True
    if line.startswith("Installing collected packages"):
        progress.file, progress.done_bytes, progress.total_bytes = "unpacking", 0, 0
        return True
    return False


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    except OSError:
        return "missing"
    return digest.hexdigest()


def _no_window() -> dict:
    """Popen arguments that keep a console window from flashing up on Windows."""
    return {"creationflags": 0x08000000} if os.name == "nt" else {}  # CREATE_NO_WINDOW


def pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    if os.name == "nt":  # os.kill(pid, 0) would terminate the process on Windows
        import ctypes

        kernel32 = ctypes.windll.kernel32  # type: ignore[attr-defined]
        handle = kernel32.OpenProcess(0x1000, False, pid)  # PROCESS_QUERY_LIMITED_INFORMATION
        if not handle:
            return False
        code = ctypes.c_ulong()
        kernel32.GetExitCodeProcess(handle, ctypes.byref(code))
        kernel32.CloseHandle(handle)
        return code.value == 259  # STILL_ACTIVE
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie (exited, not yet reaped by its parent) is not a running server
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            return f.read().rsplit(")", 1)[-1].split()[0] != "Z"
    except OSError:
        return True


# ---- the server's lifecycle -----------------------------------------------------------------------------------------

READY_FILE = "ready.json"  # = stylelayer.api.lifecycle.READY_FILE (a test checks)
STOP_FILE = "stop-request"  # = stylelayer.api.lifecycle.STOP_FILE


@dataclass
class ServerState:
    """'stopped', 'starting' or 'running' (url and device set when running), or 'failed' with the sentence."""

    state: str
    url: str = ""
    device: str = ""
    pid: int = 0
    message: str = ""


class ManagedServer:
    """Start, find and stop the server of one Installation. The server is detached from the host's process (GIMP's
    plug-in process ends after each filter run), found again through its ready file and a health check, and stops
    by itself after `idle_minutes` without work."""

    def __init__(
        self, installation: Installation, token_file: Path | None = None, idle_minutes: float = IDLE_EXIT_MINUTES
    ):
        self.inst = installation
        self.token_file = Path(token_file) if token_file is not None else installation.folder / "token"
        self.idle_minutes = idle_minutes
        self.jobs_dir = installation.data / "jobs"
        self.styles_dir = installation.data / "styles"
        self.log_path = installation.folder / "server.log"
        self.pid_path = installation.folder / "server.pid"
        self._proc: subprocess.Popen | None = None

    def token(self) -> str:
        """The token (made on first use), in a file only this user can read."""
        with contextlib.suppress(OSError):
            text = self.token_file.read_text(encoding="utf-8").strip()
            if text:
                return text
        self.token_file.parent.mkdir(parents=True, exist_ok=True)
        token = secrets.token_urlsafe(24)
        tmp = self.token_file.with_name(self.token_file.name + ".tmp")
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        fd = os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(token)
        os.replace(tmp, self.token_file)
        return token

    def ready(self) -> dict | None:
        try:
            return json.loads((self.jobs_dir / READY_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None

    def status(self, timeout: float = 3.0) -> ServerState:
        """The server's true state: its ready file, its process and its answer to /v1/health."""
        ready = self.ready()
        if ready is None or not pid_alive(int(ready.get("pid", 0))):
            self._reap()
            starting = self._started_pid()
            if pid_alive(starting):  # started (by this or another process) and not listening yet
                return ServerState("starting", pid=starting)
            if self._proc is not None and self._proc.returncode not in (None, 0):
                return ServerState("failed", message=self.failure_sentence())
            return ServerState("stopped")
        url, pid = str(ready.get("url", "")), int(ready["pid"])
        health = _get_json(url + "/v1/health", self.token(), timeout)
        if health is None:
            return ServerState("starting", url=url, pid=pid)
        if health.get("engine") != "ready":
            return ServerState("starting", url=url, pid=pid, device=str(ready.get("device", "")))
        return ServerState("running", url=url, pid=pid, device=str(ready.get("device", "")))

    def start(self) -> ServerState:
        """Start the server detached unless one runs already; returns at once ('starting'): poll status()."""
        current = self.status()
        if current.state in ("running", "starting"):
            return current
        if not self.inst.python.exists() or self.inst.state() != "installed":
            return ServerState("failed", message="The local server is not installed completely: press Repair.")
        self.token()
        self.jobs_dir.mkdir(parents=True, exist_ok=True)
        command = [
            str(self.inst.python),
            "-c",
            "import sys; from stylelayer.cli import main; sys.exit(main(sys.argv[1:]))",
            "serve",
            "--port",
            "0",
            "--device",
            "auto",
            "--token-file",
            str(self.token_file),
            "--data-dir",
            str(self.jobs_dir),
            "--styles-dir",
            str(self.styles_dir),
            "--idle-exit",
            f"{self.idle_minutes:g}",
        ]
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        for name in ("PYTHONPATH", "PYTHONHOME", "STYLELAYER_TOKEN"):
            env.pop(name, None)
        log = open(self.log_path, "a", encoding="utf-8")  # noqa: SIM115 - the child keeps it; ours closes below
        log.write(f"==== start {time.strftime('%Y-%m-%d %H:%M:%S')}\n")
        log.flush()
        detached: dict = {"start_new_session": True}
        if os.name == "nt":  # DETACHED_PROCESS | CREATE_NEW_PROCESS_GROUP | CREATE_NO_WINDOW
            detached = {"creationflags": 0x00000008 | 0x00000200 | 0x08000000}
        try:
            self._proc = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                close_fds=True,
                **detached,
            )
        finally:
            log.close()
        self.pid_path.write_text(str(self._proc.pid), encoding="utf-8")
        return ServerState("starting", pid=self._proc.pid)

    def _started_pid(self) -> int:
        """The pid of the server last started here: a later plug-in process sees it starting before it listens."""
        try:
            return int(self.pid_path.read_text(encoding="utf-8").strip() or 0)
        except (OSError, ValueError):
            return 0

    def start_and_wait(self, timeout: float = 600.0) -> ServerState:
        """Start (unless running) and wait until it runs or fails: for worker threads and scripts."""
        started = self.start()
        return started if started.state == "failed" else self.wait_running(timeout)

    def wait_running(self, timeout: float = 300.0) -> ServerState:
        """Poll until running or failed (for callers without a UI loop, e.g. GIMP's plug-in and the tests)."""
        deadline = time.monotonic() + timeout
        while True:
            current = self.status()
            if current.state in ("running", "failed", "stopped") or time.monotonic() > deadline:
                if current.state == "stopped":
                    return ServerState("failed", message=self.failure_sentence())
                return current
            time.sleep(0.5)

    def stop(self, timeout: float = 30.0) -> bool:
        """Ask the server to stop (a stop-request file: works the same on every OS), then end it if it does not.
        True when no managed server runs afterwards."""
        ready = self.ready()
        pid = int(ready.get("pid", 0)) if ready else self._started_pid()
        if not pid_alive(pid):
            self._reap()
            return True
        with contextlib.suppress(OSError):
            (self.jobs_dir / STOP_FILE).write_text("stop", encoding="utf-8")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self._reap()
            if not pid_alive(pid):
                return True
            time.sleep(0.2)
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGTERM)  # on Windows this terminates it at once
        time.sleep(1)
        self._reap()
        return not pid_alive(pid)

    def _reap(self) -> None:
        if self._proc is not None:
            self._proc.poll()

    def failure_sentence(self) -> str:
        """Why the server did not start, from the end of its log, in one sentence."""
        try:
            tail = self.log_path.read_text(encoding="utf-8", errors="replace")[-4000:]
        except OSError:
            tail = ""
        lines = [line.strip() for line in tail.splitlines() if line.strip()]
        if is_disk_full(tail):
            return f"The server stopped: the disk is full; free some space and press Start (log: {self.log_path})."
        serve_lines = [line for line in lines if line.startswith("stylelayer serve:")]
        reason = (
            serve_lines[-1][len("stylelayer serve:") :].strip()
            if serve_lines
            else (lines[-1] if lines else "no output")
        )
        return f"The server did not start ({reason[:200]}); press Repair, and see the server log {self.log_path}."


def _get_json(url: str, token: str, timeout: float) -> dict | None:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return json.loads(response.read().decode("utf-8"))
    except (OSError, ValueError, urllib.error.URLError):
        return None


# ---- what the dialogs show ------------------------------------------------------------------------------------------


def state_line(
    inst: Installation, server: ServerState | None, failure: str = "", progress: Progress | None = None
) -> str:
    """The one true state line: Not installed · Installing — … · Incomplete · Stopped · Starting · Running on … ·
    Failed: sentence."""
    if failure:
        return f"Failed: {failure}"
    if progress is not None:
        return progress.text()
    state = inst.state()
    if state == "installing":
        return "Installing (in another window)…"
    if state == "not installed":
        return "Not installed: press Install."
    if state == "incomplete":
        return "Incomplete: an install stopped half-way; press Repair to finish it."
    if server is None or server.state == "stopped":
        return "Stopped: press Start (a job also starts it)."
    if server.state == "starting":
        return "Starting…"
    if server.state == "failed":
        return f"Failed: {server.message}"
    info = inst.installed_info()
    if server.device.startswith("cuda") and info.get("gpu"):
        return f'Running on CUDA "{info["gpu"]}"'
    return f"Running on {server.device.upper() if server.device else 'CPU'}"


def describe_plan(settings: Settings) -> str:
    """Before Install: what will be installed and how big it is."""
    try:
        return settings.requirements().describe()
    except InstallError as exc:
        return str(exc)


def folder_size_text(inst: Installation) -> str:
    return f"{inst.folder} ({_size(inst.size_bytes() / 1e6)})" if inst.folder.exists() else str(inst.folder)


def find_wheel(folder: Path) -> Path | None:
    """The stylelayer wheel the plug-in carries (the newest if several)."""
    wheels = sorted(Path(folder).glob("stylelayer-*.whl"))
    return wheels[-1] if wheels else None


__all__ = [
    "BACKEND_NAMES",
    "IDLE_EXIT_MINUTES",
    "PYPI",
    "REQUIREMENTS",
    "Hardware",
    "InstallError",
    "Installation",
    "ManagedServer",
    "Progress",
    "Requirements",
    "ServerState",
    "Settings",
    "describe_plan",
    "detect_hardware",
    "find_python",
    "find_wheel",
    "folder_size_text",
    "platform_key",
    "requirements_for",
    "state_line",
]
