"""The engine's own errors: running out of device memory and a missing input image, each as an engine exception
that callers (the server's job queue, the CLI) handle without knowing torch."""

from __future__ import annotations

import pytest
import torch

from stylelayer.core import engine as engine_module
from stylelayer.core.engine import MissingInput, OutOfMemory, check_inputs
from stylelayer.core.params import StyleParams

OUT_OF_MEMORY = [
    torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB"),
    RuntimeError("CUDA error: out of memory"),
    RuntimeError("MPS backend out of memory (MPS allocated: 9.00 GB, other allocations: 1.00 GB)"),
    RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 80000000000 bytes."),
]


@pytest.mark.parametrize("error", OUT_OF_MEMORY, ids=["cuda", "cuda-runtime", "mps", "cpu"])
def test_out_of_memory_becomes_the_engines_error_with_the_cache_freed(
    engine, monkeypatch, tubingen64, starry64, error
) -> None:
    def exhausted(*args: object, **kwargs: object) -> None:
        raise error

    freed = []
    monkeypatch.setattr(engine, "model", exhausted)
    monkeypatch.setattr(engine_module, "_free_cached_memory", freed.append)
    with pytest.raises(OutOfMemory) as raised:
        engine.stylize(tubingen64, [starry64], StyleParams(size=64, iterations=2))
    width, height = tubingen64.size
    assert f"at {width}x{height} px: reduce size" in str(raised.value)
    assert raised.value.__cause__ is None and raised.value.__suppress_context__  # no torch traceback in the message
    assert freed == [engine.device, engine.device]  # once before the level's second try with half the budget


def test_a_level_that_runs_out_of_memory_runs_again_with_half_the_budget(
    engine, monkeypatch, tubingen64, starry64
) -> None:
    """Where the planner under-counted (a GPU's workspaces, a capped allocator), the level starts again within
    half the budget, and the job's history counts its iterations once."""
    model, calls, budgets = engine.model, [], []

    def once_exhausted(*args: object, **kwargs: object):
        calls.append(1)
        if len(calls) == 2:  # inside the level (the first call makes the style's Gram matrices, cached after)
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return model(*args, **kwargs)

    planned = engine_module.plan_level

    def spy(*args: object, **kwargs: object):
        budgets.append(kwargs["budget"])
        return planned(*args, **kwargs)

    monkeypatch.setattr(engine, "model", once_exhausted)
    monkeypatch.setattr(engine_module, "plan_level", spy)
    monkeypatch.setattr(engine_module, "_free_cached_memory", lambda device: None)
    result = engine.stylize(tubingen64, [starry64], StyleParams(size=64, iterations=3, seed=1))
    assert result.iterations == 3 and len(result.history) == 3 and len(result.plans) == 1
    assert len(budgets) == 2 and abs(budgets[1] - budgets[0] / 2) <= budgets[0] * 0.05


def test_other_runtime_errors_pass_through_unchanged(engine, monkeypatch, tubingen64, starry64) -> None:
    error = RuntimeError("kernel exploded")

    def broken(*args: object, **kwargs: object) -> None:
        raise error

    monkeypatch.setattr(engine, "model", broken)
    with pytest.raises(RuntimeError) as raised:
        engine.stylize(tubingen64, [starry64], StyleParams(size=64, iterations=2))
    assert raised.value is error


def test_a_missing_image_names_which_one(tubingen64) -> None:
    with pytest.raises(MissingInput) as no_content:
        check_inputs(None, [tubingen64], StyleParams())
    with pytest.raises(MissingInput) as no_style:
        check_inputs(tubingen64, [], StyleParams())
    with pytest.raises(MissingInput) as no_style_to_start_from:
        check_inputs(tubingen64, [], StyleParams(mode="inversion", init="style"))
    assert (no_content.value.image, no_style.value.image, no_style_to_start_from.value.image) == (
        "content",
        "style",
        "style",
    )
    check_inputs(None, [tubingen64], StyleParams(mode="texture", output_size=(32, 32)))  # texture needs no content
