"""The managed server's installer (plugins/common/stylelayer_managed.py) without PyTorch: the platform/backend
table, hardware detection, finding Python, and each failure's one sentence from real pip runs and real errors."""

from __future__ import annotations

import errno
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from testimages import REPO

sys.path.insert(0, str(REPO / "plugins" / "common"))  # the plug-ins' shared modules are not a package
import stylelayer_managed as managed

from stylelayer.api import lifecycle

CUDA_INDEX_WINDOWS = "https://download.pytorch.org/whl/cu128"
CPU_INDEX = "https://download.pytorch.org/whl/cpu"


def _which(found: dict[str, str]):
    return lambda name: found.get(name)


def _fake_nvidia_smi(tmp_path: Path, name: str) -> str:
    script = tmp_path / "nvidia-smi"
    script.write_text(f"#!/bin/sh\necho '{name}, 12288 MiB'\n")
    script.chmod(0o755)
    return str(script)


@pytest.mark.parametrize(
    ("system", "machine", "gpu", "backend", "index", "torch"),
    [
        ("Windows", "AMD64", True, "cuda", CUDA_INDEX_WINDOWS, "torch>=2.4"),
        ("Windows", "AMD64", False, "cpu", managed.PYPI, "torch>=2.4"),
        ("Linux", "x86_64", True, "cuda", managed.PYPI, "torch>=2.4"),
        ("Linux", "x86_64", False, "cpu", CPU_INDEX, "torch>=2.4"),
        ("Darwin", "arm64", False, "mps", managed.PYPI, "torch>=2.4"),
        ("Darwin", "arm64", True, "mps", managed.PYPI, "torch>=2.4"),  # no CUDA on a Mac, whatever is on PATH
        ("Darwin", "x86_64", False, "cpu", managed.PYPI, "torch==2.2.2"),
    ],
)
def test_the_table_per_platform_and_gpu(tmp_path, system, machine, gpu, backend, index, torch) -> None:
    platform_name = managed.platform_key(system, machine)
    which = _which({"nvidia-smi": _fake_nvidia_smi(tmp_path, "NVIDIA GeForce RTX 3060")} if gpu else {})
    hardware = managed.detect_hardware(platform_name, which=which)
    assert hardware.backend == backend
    assert hardware.gpu == ("NVIDIA GeForce RTX 3060, 12288 MiB" if backend == "cuda" else "")
    row = managed.requirements_for(platform_name, backend)
    assert row.index == index
    assert row.packages[0] == torch and any(p.startswith("torchvision") for p in row.packages)
    assert row.download_mb > 0
    described = row.describe()
    assert ("PyPI" if index == managed.PYPI else index) in described and torch in described
    assert ("GB" if row.download_mb >= 1000 else "MB") in described


def test_intel_macs_get_the_last_pytorch_for_them_and_a_python_it_has_wheels_for() -> None:
    row = managed.REQUIREMENTS[("macos-x86_64", "cpu")]
    assert "numpy<2" in row.packages and row.python_max == (3, 12)


def test_a_failing_nvidia_smi_means_the_cpu(tmp_path) -> None:
    script = tmp_path / "nvidia-smi"
    script.write_text(
        "#!/bin/sh\necho 'NVIDIA-SMI has failed because it could not communicate with the driver' >&2\nexit 9\n"
    )
    script.chmod(0o755)
    assert managed.detect_hardware("linux", which=_which({"nvidia-smi": str(script)})).backend == "cpu"


def test_the_choice_is_overridable_and_a_missing_build_is_one_sentence(tmp_path) -> None:
    wheel = tmp_path / "stylelayer-0.1.0-py3-none-any.whl"
    settings = managed.Settings(wheel=wheel, platform="linux", backend="cuda", packages=("torch==2.13.0",), index="X")
    row = settings.requirements()
    assert (row.backend, row.index, row.packages) == ("cuda", "X", ("torch==2.13.0",))
    with pytest.raises(managed.InstallError, match=r"^There is no PyTorch build for NVIDIA CUDA on macos-arm64: "):
        managed.Settings(wheel=wheel, platform="macos-arm64", backend="cuda").requirements()


# ---- Python --------------------------------------------------------------------------------------------------------


def test_no_python_on_path_names_which_to_install_and_where(tmp_path, monkeypatch) -> None:
    monkeypatch.delenv("STYLELAYER_PYTHON", raising=False)
    empty = tmp_path / "bin"
    empty.mkdir()
    candidates = managed.python_candidates(path=str(empty), platform_name="linux")
    assert candidates == []
    with pytest.raises(managed.InstallError) as err:
        managed.find_python(candidates)
    assert str(err.value) == (
        "No Python was found: the server needs Python 3.10 to 3.13; install Python 3.13 from"
        " https://www.python.org/downloads/, then press Install again."
    )


def _fake_python(folder: Path, name: str, version: str, venv: bool = True) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    body = f"print('[{version.replace('.', ', ')}]')" if venv else "import sys; sys.exit(\"No module named 'venv'\")"
    path.write_text(f"#!{sys.executable}\n{body}\n")
    path.chmod(0o755)
    return path


def test_a_python_on_path_is_found_and_a_wrong_one_is_named(tmp_path) -> None:
    old = _fake_python(tmp_path / "bin", "python3", "3.8.10")
    with pytest.raises(managed.InstallError) as err:
        managed.find_python(managed.python_candidates(path=str(tmp_path / "bin"), platform_name="linux"))
    assert str(err.value).startswith(f"Python 3.8.10 at {old} is too old: the server needs Python 3.10 to 3.13; ")
    new = _fake_python(tmp_path / "bin", "python3.11", "3.11.4")
    found = managed.find_python(managed.python_candidates(path=str(tmp_path / "bin"), platform_name="linux"))
    assert (found.path, found.version) == (str(new), (3, 11, 4))


def test_a_python_without_venv_is_named(tmp_path) -> None:
    bare = _fake_python(tmp_path / "bin", "python3", "3.11.2", venv=False)
    with pytest.raises(managed.InstallError, match=f"The Python at {bare} lacks its venv module: install it"):
        managed.find_python([str(bare)])


def test_this_python_is_found_with_its_version() -> None:
    found = managed.find_python([sys.executable])
    assert found.version[:2] == sys.version_info[:2]


# ---- failures in one sentence ---------------------------------------------------------------------------------------


def _bare_pip_env(monkeypatch) -> None:
    """pip sees no configuration and no local package folders: only the index a test names."""
    for name in list(os.environ):
        if name.startswith("PIP_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)


def _installation_with_venv(tmp_path: Path) -> managed.Installation:
    """An Installation whose venv's python runs this interpreter (no venv to create for a pip failure test)."""
    inst = managed.Installation(tmp_path / "install")
    inst.folder.mkdir(parents=True)
    (inst.venv / "bin").mkdir(parents=True)
    inst.python.write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')
    inst.python.chmod(0o755)
    return inst


def test_no_network_is_one_sentence_from_a_real_pip_run(tmp_path, monkeypatch) -> None:
    _bare_pip_env(monkeypatch)
    inst = _installation_with_venv(tmp_path)
    unreachable = "http://127.0.0.1:9/simple"  # the discard port: nothing listens, the connection is refused
    settings = managed.Settings(
        wheel=tmp_path / "w.whl",
        platform="linux",
        backend="cpu",
        index=unreachable,
        packages=("stylelayer-not-a-package==1",),
    )
    for step in ("python", "venv"):  # these two are done: the torch step runs pip
        inst._mark(step, inst._step_key(step, settings, settings.requirements()), {"python": sys.executable})
    with pytest.raises(managed.InstallError) as err:
        inst.install(settings)
    assert str(err.value) == (
        f"No network: the package index ({unreachable}) could not be reached; check the internet connection (or the"
        " proxy), then press Repair: finished downloads are kept."
    )
    log = inst.log_path.read_text()
    assert "step venv: already done" in log and "Connection refused" in log and f"FAILED: {err.value}" in log
    assert inst.state() == "incomplete" and not inst.lock_path.exists()


def test_disk_full_from_pip_is_one_sentence(tmp_path) -> None:
    output = (
        "Installing collected packages: torch\n"
        "ERROR: Could not install packages due to an OSError: [Errno 28] No space left on device\n"
    )
    failure = managed.pip_failure(output, 1, managed.PYPI, tmp_path, tmp_path / "install.log", 600)
    assert str(failure) == (
        f"The disk is full: the install needs about 600 MB free in {tmp_path}; free some space, then press Repair:"
        " finished steps and downloads are kept."
    )


def test_disk_full_while_writing_is_one_sentence(tmp_path, monkeypatch) -> None:
    """ENOSPC injected where the installer itself writes (the venv step), not only in pip's output."""
    inst = managed.Installation(tmp_path / "install")
    settings = managed.Settings(wheel=tmp_path / "w.whl", platform="linux", backend="cpu", python=sys.executable)

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(managed.Installation, "_step_venv", full)
    with pytest.raises(managed.InstallError, match=r"^The disk is full: the install needs about 600 MB free in "):
        inst.install(settings)
    assert inst.marker("python") is not None and inst.marker("venv") is None
    assert inst.state() == "incomplete"


def test_another_pip_error_names_it_and_the_log(tmp_path) -> None:
    output = "ERROR: Could not find a version that satisfies the requirement torch==9.9 (from versions: none)\n"
    failure = managed.pip_failure(output, 1, managed.PYPI, tmp_path, tmp_path / "install.log", 10)
    assert str(failure) == (
        "Installing failed (Could not find a version that satisfies the requirement torch==9.9 (from versions:"
        f" none)); the install log {tmp_path / 'install.log'} has the details, press Repair to try again."
    )


def test_a_cuda_build_that_sees_no_gpu_is_one_sentence_from_this_torch() -> None:
    """This machine's PyTorch probed as the installer probes the venv's: on a machine without a GPU, a CUDA
    build is the real case; a CPU build gives the same answer (no CUDA device)."""
    out = subprocess.run([sys.executable, "-c", managed._TORCH_PROBE], capture_output=True, text=True, check=True)
    probe = __import__("json").loads(out.stdout.strip().splitlines()[-1])
    if probe.get("cuda"):
        pytest.skip("this machine has a CUDA GPU: the failure cannot happen here")
    failure = managed.check_failure(probe, "cuda")
    assert failure is not None and str(failure).startswith(
        f"The CUDA build of PyTorch (CUDA {probe.get('cuda_version') or '?'}) cannot see an NVIDIA GPU: update the"
        " NVIDIA driver"
    )
    assert managed.check_failure(probe, "cpu") is None


def test_a_torch_that_does_not_load_is_one_sentence() -> None:
    failure = managed.check_failure(
        {"error": "OSError: [WinError 126] Error loading c10.dll or one of its dependencies"}, "cuda"
    )
    assert str(failure).startswith("PyTorch is installed but does not load (OSError: [WinError 126] Error loading")
    assert "Visual C++ Redistributable" in str(failure)


# ---- progress, state, lock, token -------------------------------------------------------------------------------


def test_progress_from_pips_raw_progress_lines() -> None:
    progress = managed.Progress("torch", 3, 5)
    lines = [
        "Collecting torch",
        "  Downloading torch-2.13.0-cp311-cp311-manylinux_2_28_x86_64.whl (191.8 MB)",
        "Progress 0 of 191794682",
        "Progress 95897341 of 191794682",
    ]
    for line in lines:
        managed._track(progress, line)
    assert progress.text() == "Installing — Installing PyTorch (step 3 of 5): torch 50%, 96 of 192 MB"
    managed._track(progress, "Installing collected packages: torch")
    assert progress.text() == "Installing — Installing PyTorch (step 3 of 5): unpacking"


def test_state_lines(tmp_path) -> None:
    inst = managed.Installation(tmp_path / "install")
    assert managed.state_line(inst, None) == "Not installed: press Install."
    inst.steps_dir.mkdir(parents=True)
    inst._mark("python", "auto", {})
    assert managed.state_line(inst, None).startswith("Incomplete: an install stopped half-way; press Repair")
    for step in managed.STEPS:
        inst._mark(step, "k", {"gpu": "NVIDIA GeForce RTX 3060, 12 GB"} if step == "check" else {})
    (inst.venv / "bin").mkdir(parents=True)
    inst.python.write_text("")
    assert managed.state_line(inst, managed.ServerState("stopped")).startswith("Stopped: press Start")
    assert managed.state_line(inst, managed.ServerState("starting")) == "Starting…"
    running = managed.ServerState("running", url="http://127.0.0.1:5", device="cuda")
    assert managed.state_line(inst, running) == 'Running on CUDA "NVIDIA GeForce RTX 3060, 12 GB"'
    assert managed.state_line(inst, managed.ServerState("running", device="cpu")) == "Running on CPU"
    assert managed.state_line(inst, None, failure="No network: …") == "Failed: No network: …"


def test_a_second_install_is_refused_while_one_runs(tmp_path) -> None:
    inst = managed.Installation(tmp_path / "install")
    inst.folder.mkdir(parents=True)
    inst.lock_path.write_text(str(os.getppid()))  # a live process holds the lock
    assert inst.state() == "installing"
    settings = managed.Settings(wheel=tmp_path / "w.whl", platform="linux", backend="cpu")
    with pytest.raises(managed.InstallError, match="^Another install is running"):
        inst.install(settings)
    inst.lock_path.write_text("999999999")  # left by an install that was killed: taken over
    assert inst.state() != "installing"


def test_the_token_file_is_private_and_kept(tmp_path) -> None:
    server = managed.ManagedServer(managed.Installation(tmp_path / "install"), token_file=tmp_path / "plugin" / "tok")
    token = server.token()
    assert len(token) >= 30 and server.token() == token
    assert stat.S_IMODE((tmp_path / "plugin" / "tok").stat().st_mode) == 0o600


def test_uninstall_keeps_the_style_library_and_jobs(tmp_path) -> None:
    inst = managed.Installation(tmp_path / "install")
    for rel in ("venv/bin/python", "pip-cache/x", "steps/venv.json", "install.log", "data/styles/s.png", "data/jobs/j"):
        (inst.folder / rel).parent.mkdir(parents=True, exist_ok=True)
        (inst.folder / rel).write_text("x")
    inst.uninstall()
    assert sorted(p.relative_to(inst.folder).as_posix() for p in inst.folder.rglob("*") if p.is_file()) == [
        "data/jobs/j",
        "data/styles/s.png",
    ]
    assert inst.state() == "not installed"


def test_the_file_names_match_the_servers() -> None:
    assert (managed.READY_FILE, managed.STOP_FILE) == (lifecycle.READY_FILE, lifecycle.STOP_FILE)


def test_the_table_can_be_overridden_from_the_environment(tmp_path) -> None:
    env = {"STYLELAYER_TORCH_INDEX": "pypi", "STYLELAYER_TORCH_PACKAGES": "torch==2.13.0 torchvision==0.28.0"}
    found = managed.env_overrides(env)
    assert found == {"index": managed.PYPI, "packages": ("torch==2.13.0", "torchvision==0.28.0")}
    row = managed.Settings(wheel=tmp_path / "w.whl", platform="linux", backend="cpu", **found).requirements()
    assert (row.index, row.packages) == (managed.PYPI, ("torch==2.13.0", "torchvision==0.28.0"))
    assert managed.env_overrides({}) == {}
