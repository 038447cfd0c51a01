"""What this process holds and may hold on a device: RAM or VRAM probes, CUDA's own share, the allocator's cap.

The planner (memory.py) works in bytes beyond what the process holds; these probes say where that starts and how
much is free, and keep the process inside a budget the way nvidia-smi and the OS count it.
"""

from __future__ import annotations

import ctypes
import os
from collections.abc import Callable

import torch

_M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter number


def return_freed_memory_to_the_system() -> None:
    """Make glibc give large freed blocks back to the system at once (CPU jobs).

    By default glibc raises its mmap threshold after large frees and then serves big tensors from a heap it never
    shrinks: the process's RSS keeps the peak of every past phase and a budget measured in RSS is exceeded (measured:
    1.55 GB against a 1.4 GB plan; 1.37 GB with this). Tensors over 1 MB are mapped and unmapped on their own.
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return  # not glibc (macOS, musl): nothing to tune
    libc.mallopt(_M_MMAP_THRESHOLD, 2**20)


_cuda_runtime: dict[int, int] = {}  # device index -> bytes the CUDA context and libraries hold outside PyTorch's pool
MAX_CUDA_RUNTIME = 4 * 2**30  # more than this is taken for other processes on the card, not our own context
# Kernels that jobs load later (other shapes pick other cuDNN kernels) and the driver's own share: on an H200, a
# 4000x3000 job in 8 GB showed the card 1.3 GB above PyTorch's peak pool (8.43 vs 7.12 GiB, sampled every 20 ms).
LAZY_CODE_MARGIN = 512 * 2**20


def measure_cuda_runtime(device: torch.device) -> int:
    """Bytes of the card this process holds outside PyTorch's allocator (the CUDA context, cuDNN's and cuBLAS's
    code and handles), measured once after a first pass has loaded them: nvidia-smi counts them against the process,
    so a budget must too. Other processes on the card are counted as ours (up to MAX_CUDA_RUNTIME): conservative."""
    torch.cuda.synchronize(device)
    torch.cuda.empty_cache()
    free, total = torch.cuda.mem_get_info(device)
    runtime = max(0, min(MAX_CUDA_RUNTIME, total - free - torch.cuda.memory_reserved(device))) + LAZY_CODE_MARGIN
    _cuda_runtime[_index(device)] = runtime
    return runtime


def cap_cuda_allocator(device: torch.device, limit: int) -> None:
    """Make PyTorch's allocator give back its cache, then fail, rather than let the process pass `limit` bytes."""
    total = torch.cuda.get_device_properties(device).total_memory
    runtime = _cuda_runtime.get(_index(device), 0)
    torch.cuda.set_per_process_memory_fraction(max(0.0, min(1.0, (limit - runtime) / total)), _index(device))


def _index(device: torch.device) -> int:
    return device.index if device.index is not None else torch.cuda.current_device()


def in_use(device: torch.device) -> int:
    """Memory this process holds now on `device` (the model, the runtime): the budget's starting point."""
    if device.type == "cuda":
        return torch.cuda.memory_allocated(device) + _cuda_runtime.get(_index(device), 0)
    return _private_bytes()


def default_budget(device: torch.device) -> int:
    """What this process may use on `device`: what it holds now plus 80% of what is free (RAM or VRAM)."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return in_use(device) + int(0.8 * free)
    return in_use(device) + int(0.8 * _available_ram())


def _private_bytes() -> int:
    """Resident memory that is this process's own (tensors, heap), not the shared library code it maps.

    Code pages are counted in RSS once touched and the OS drops them when it needs the room; how many are resident
    depends on the page cache: a fresh install's torch mapped 0.45 GB of them at start-up and 0.13 GB more during a
    1000x750 job, an older install's much less. A budget in RSS was exceeded by them, not by anything it plans.
    """
    try:
        with open("/proc/self/statm") as f:
            fields = f.read().split()
        return (int(fields[1]) - int(fields[2])) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def peak_private_rise(run: Callable[[], object]) -> int | None:
    """Bytes the process's private memory rose to above where it stood while `run` ran; None where the OS cannot say.

    Linux only: it resets the kernel's high-water mark of the resident set (VmHWM, which getrusage's ru_maxrss reads
    too, so a process's reported peak counts from here afterwards) and takes off the library code that `run` mapped
    on the way (first calls of oneDNN's kernels: tens of MB), which the peak includes.
    """
    try:
        before = _status_bytes("RssAnon:")
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except (OSError, ValueError):
        return None
    run()
    shared = _status_bytes("RssFile:") + _status_bytes("RssShmem:")
    return max(0, _status_bytes("VmHWM:") - shared - before)


def _status_bytes(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field):
                return int(line.split()[1]) * 1024
    raise ValueError(f"{field} not in /proc/self/status")


def _available_ram() -> int:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES")
