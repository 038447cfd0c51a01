"""Status lines while the painter waits: the time estimate before a run, and progress during it.

Standard library only, Python 3.8: it runs in Krita's and GIMP's own Python. `stylelayer install-plugin`
copies it from plugins/common into each plug-in's folder.
"""

from __future__ import annotations

import math


# ---- time ---------------------------------------------------------------------------------------------
def format_duration(seconds: float) -> str:
    """'45 s', '3 min', '1 h 20 min': what a painter reads before and while waiting."""
    seconds = max(0, int(math.ceil(seconds)))
    if seconds < 90:
        return f"{seconds} s"
    minutes = int(round(seconds / 60))
    if minutes < 90:
        return f"{minutes} min"
    return f"{minutes // 60} h {minutes % 60} min"


def estimate_text(estimate: dict) -> str:
    """One line from the server's /v1/estimate answer: the time it expects, or why the job would not fit."""
    if not isinstance(estimate, dict):
        return ""
    if estimate.get("fits") is False:
        return f"Too large for the server's memory: {estimate.get('problem') or 'choose a smaller working size'}."
    seconds = _num(estimate.get("seconds"))
    if seconds is None:
        return ""
    device = str(estimate.get("device") or "")
    where = "on the server's CPU" if device == "cpu" else f"on the server's {device.upper()}" if device else ""
    levels = estimate.get("levels") or []
    detail = ""
    if len(levels) > 1:
        last = levels[-1]
        tiled = " in tiles" if any(level.get("tiled") for level in levels) else ""
        detail = f", {len(levels)} levels up to {last.get('width')}x{last.get('height')}{tiled}"
    measured = (estimate.get("speed") or {}).get("source") == "measured"
    guess = "" if measured else " (a first guess until the server has finished a job)"
    wait, ahead = _num(estimate.get("wait_seconds")) or 0.0, estimate.get("jobs_ahead")
    queue = ""
    if isinstance(ahead, int) and not isinstance(ahead, bool) and ahead > 0:
        jobs = "1 job" if ahead == 1 else f"{ahead} jobs"
        queue = f", after {jobs} ahead of it (about {format_duration(wait)})"
        seconds += wait
    text = f"Estimated time: about {format_duration(seconds)} {where}{detail}{queue}{guess}"
    return text.replace("  ", " ") + "."


# ---- progress ------------------------------------------------------------------------------------
def _num(value: object) -> float | None:
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


def _total(status: dict) -> float | None:
    total = _num(status.get("total")) or _num(status.get("iterations"))
    return total if total is not None and total > 0 else None


def progress_fraction(status: dict | None) -> float | None:
    """0..1 from a server job status: `progress` when given, else iteration / total; None when unknown."""
    if not isinstance(status, dict):
        return None
    value = _num(status.get("progress"))
    if value is not None:
        return min(1.0, max(0.0, value / 100.0 if value > 1.0 else value))
    done, total = _num(status.get("iteration")), _total(status)
    if done is not None and total:
        return min(1.0, max(0.0, done / total))
    return None


def progress_text(status: dict | None, title: str = "") -> str:
    """One status line ("Iteration 3/200, about 12 s left", "Iteration 230/350, level 3/4, tile 13/40, about
    2 min left", "Queued on the server (2 ahead)…", "Done").

    With a `title` the line reads "<title>: iteration 3/200, ..." and is just the title while nothing is known.
    """
    if not isinstance(status, dict):
        return title or "Waiting for the server…"
    state = status.get("state") or status.get("status") or ""
    state = state if isinstance(state, str) else ""
    done, total = status.get("iteration"), _total(status)
    if state == "queued":
        ahead = status.get("queue_position")
        ahead_text = f" ({ahead} ahead)" if isinstance(ahead, int) and not isinstance(ahead, bool) and ahead > 0 else ""
        text = f"queued on the server{ahead_text}…"
    elif state == "running" and done == 0:  # planning and the first level's set-up: no iteration yet
        text = "starting on the server…"
    elif isinstance(done, int) and not isinstance(done, bool) and total and (done > 0 or state == "running"):
        text = f"iteration {done}/{int(total)}"
        level, levels = status.get("level"), status.get("levels")
        if isinstance(levels, int) and isinstance(level, int) and levels > 1 and level > 0:
            text += f", level {level}/{levels}"
        tile, tiles = status.get("tile"), status.get("tiles")
        if isinstance(tiles, int) and isinstance(tile, int) and tiles > 0 and tile > 0:
            text += f", tile {tile}/{tiles}"
        eta = _num(status.get("eta_s"))
        if state == "running" and eta is not None and eta > 0:
            text += f", about {format_duration(eta)} left"
    elif state:
        text = state + ("…" if state == "running" else "")
    else:
        return title or "Working…"
    return f"{title}: {text}" if title else text[0].upper() + text[1:]
