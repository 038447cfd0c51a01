"""What the painter reads, in the same words in Krita and GIMP: failures as sentences that say what to do, and the
connection status line.

Standard library only, Python 3.8: it runs in Krita's and GIMP's own Python. `stylelayer install-plugin`
copies it from plugins/common into each plug-in's folder.
"""

from __future__ import annotations

CANCELLED_MESSAGE = "The style transfer was cancelled; the image is unchanged."
NOT_CONNECTED_YET = "Not connected yet: press Test connection, or Apply."  # until a check or a job says more


class PluginError(Exception):
    """A failure worth showing to the painter as it is."""


def sentence(text: str) -> str:
    """`text` as a sentence: a capital first letter (unless it starts with an address) and a full stop (GIMP's
    error box shows it as it is)."""
    text = text.strip()
    if not text:
        return text
    if "://" not in text.split(" ", 1)[0]:
        text = text[0].upper() + text[1:]
    return text if text.endswith((".", "!", "?", "…")) else text + "."


def error_message(exc: BaseException) -> str:
    """What the painter reads for an exception from the plug-in, the HTTP client or the host, in Krita and GIMP:
    what happened and what to do, in a sentence or two.

    The client's exceptions are recognised by class name: this module does not import the client.
    """
    if isinstance(exc, PluginError):
        return sentence(str(exc))
    kinds = {cls.__name__ for cls in type(exc).__mro__}
    message = str(getattr(exc, "message", None) or exc) or type(exc).__name__
    url = getattr(exc, "url", None) or "the server address"
    code = getattr(exc, "code", None)
    if "JobCancelled" in kinds:
        return CANCELLED_MESSAGE
    if "JobInterrupted" in kinds:
        return (
            f"The run was interrupted: the stylelayer server at {url} stopped while it worked on the layer. The image "
            "is unchanged. Start the server again ('stylelayer serve'), then press Apply again."
        )
    for kind, text in _CONNECTION_MESSAGES:
        if kind in kinds:
            return text.format(url=url, message=message)
    if "WrongToken" in kinds:
        what = "requires a token" if "none was sent" in message else "did not accept the token"
        return (
            f"The server at {url} {what}. Paste the token the server was started with (STYLELAYER_TOKEN or its "
            "--token-file) into the Token field."
        )
    if code in _CODE_MESSAGES:
        return _CODE_MESSAGES[code].format(message=message)
    if "JobFailed" in kinds:
        return (
            f"The server could not finish the style transfer ({message}). Try again; if it fails again, try a "
            "smaller working size and look at the server's window."
        )
    if "StylelayerError" in kinds:
        return f"The server refused the request: {message}."
    return f"Unexpected error ({type(exc).__name__}): {message}"


_CONNECTION_MESSAGES = (  # (client exception class, what the painter reads)
    (
        "ServerUnavailable",
        "Cannot reach the stylelayer server at {url}. Start it with 'stylelayer serve' on that "
        "machine, or correct the server address.",
    ),
    (
        "TimedOut",
        "The stylelayer server at {url} did not answer in time. It may be busy with a large job: try "
        "again in a moment, or look at the server's window for errors.",
    ),
    (
        "ConnectionLost",
        "The connection to {url} broke off. If the stylelayer server stopped, start it again; if "
        "the address belongs to another program, correct it.",
    ),
    (
        "NotStylelayer",
        "{url} answers, but it is not a stylelayer server. Check the address and port: the server "
        "prints its URL when it starts (usually http://127.0.0.1:8765), with nothing after the port.",
    ),
    (
        "VersionMismatch",
        "The server at {url} does not match this plug-in ({message}). Install the same stylelayer "
        "version on both sides: pip install -U stylelayer, then stylelayer install-plugin.",
    ),
)
_CODE_MESSAGES = {  # the server's error codes that need their own words
    "out_of_memory": "The server ran out of memory for this size. Choose a smaller working size or the Preview "
    "preset, or give the server more memory (--max-memory) or a GPU.",
    "engine_unavailable": "The server cannot paint right now ({message}); look at the server's window.",
    "engine_loading": "The server is still loading its neural network; try again in a few seconds.",
    "queue_full": "The server is busy with other jobs ({message}).",
    "too_large": "The layer is too large for this server ({message}). Select a smaller area, or scale the image down.",
    "too_many_pixels": "The layer is too large for this server ({message}). Select a smaller area, or scale the "
    "image down.",
    "abandoned": "The server stopped the job because the plug-in stopped asking about it ({message}).",
}


def connection_text(info: dict, url: str) -> str:
    """The status line after a successful connection check: which server, on what, whether a token is in use."""
    device = str(info.get("device") or "?")
    kind = "CPU" if device.split(":")[0] == "cpu" else "GPU" if device.startswith("cuda") else device
    token = ", token accepted" if info.get("auth_required") else ""
    return f"Connected to stylelayer {info.get('version', '?')} at {url} ({kind}{token})."
