"""Controls of a test fake that still work when the fake runs in another process (a Ray actor).

A test steers a fake engine through attributes (`gate`, `fail_with`, `step_delay`, ...) and watches it through
others (`started`, `calls`), often while a job runs. The fake keeps them in a `Controls`; pickled for another process
(`share`), the copy gets a `LinkedControls` that asks this process for every value over a local authenticated
connection, so the test's later changes reach the copy and the copy's reports reach the test. Events and lists stay
here and are used through small proxies that refer to the object itself (not to the attribute that held it).
"""

from __future__ import annotations

import secrets
import threading
from multiprocessing.connection import Client, Connection, Listener
from typing import Any


class Controls:
    """Named values of a fake, in the process of the test that set them."""

    def __init__(self) -> None:
        self.values: dict[str, Any] = {}

    def get(self, name: str) -> Any:
        return self.values[name]

    def set(self, name: str, value: Any) -> None:
        self.values[name] = value


class _Host:
    """Serves the controls this process has shared (one host per process, started on the first `share`)."""

    def __init__(self) -> None:
        self.authkey = secrets.token_bytes(16)
        self.listener = Listener(("127.0.0.1", 0), authkey=self.authkey)
        self.shared: dict[int, Controls] = {}
        self.objects: dict[int, Any] = {}  # the events and lists handed out as proxies, by id
        threading.Thread(target=self._accept, name="fake-link", daemon=True).start()

    def _accept(self) -> None:
        while True:
            connection = self.listener.accept()
            threading.Thread(target=self._serve, args=(connection,), name="fake-link-peer", daemon=True).start()

    def _serve(self, connection: Connection) -> None:
        with connection:
            while True:
                try:
                    request = connection.recv()
                except (EOFError, OSError):
                    return
                try:
                    reply = ("ok", self._answer(*request))
                except Exception as exc:  # noqa: BLE001 - sent back to be raised where the call was made
                    reply = ("error", exc)
                connection.send(reply)

    def _answer(self, key: int, op: str, *args: Any) -> Any:
        if op == "call":  # a method of an event or list handed out before
            method, *rest = args
            return getattr(self.objects[key], method)(*rest)
        controls, name = self.shared[key], args[0]
        if op == "set":
            controls.set(name, args[1])
            return None
        value = controls.get(name)
        if isinstance(value, threading.Event | list):
            self.objects[id(value)] = value
            return ("event" if isinstance(value, threading.Event) else "list", id(value))
        return ("value", value)


_host: _Host | None = None
_host_lock = threading.Lock()


def share(controls: Controls | LinkedControls) -> LinkedControls:
    """What a copy of a fake in another process uses in place of `controls`."""
    global _host
    if isinstance(controls, LinkedControls):  # a copy passed on again
        return controls
    with _host_lock:
        if _host is None:
            _host = _Host()
        _host.shared[id(controls)] = controls
        return LinkedControls(_host.listener.address, _host.authkey, id(controls))


class LinkedControls:
    """Controls that live in the test's process; each use is a round trip to it."""

    _connections: dict[tuple, Connection] = {}  # one per host and process, shared by the fake's threads
    _lock = threading.Lock()

    def __init__(self, address: tuple[str, int], authkey: bytes, key: int):
        self.address, self.authkey, self.key = address, authkey, key

    def call(self, key: int, op: str, *args: Any) -> Any:
        with LinkedControls._lock:
            connection = self._connections.get(self.address)
            if connection is None:
                connection = self._connections[self.address] = Client(self.address, authkey=self.authkey)
            connection.send((key, op, *args))
            status, value = connection.recv()
        if status == "error":
            raise value
        return value

    def get(self, name: str) -> Any:
        kind, value = self.call(self.key, "get", name)
        if kind == "event":
            return RemoteEvent(self, value)
        if kind == "list":
            return RemoteList(self, value)
        return value

    def set(self, name: str, value: Any) -> None:
        self.call(self.key, "set", name, value)


class RemoteEvent:
    """A `threading.Event` of the test's process."""

    def __init__(self, link: LinkedControls, key: int):
        self._link, self._key = link, key

    def is_set(self) -> bool:
        return self._link.call(self._key, "call", "is_set")

    def set(self) -> None:
        self._link.call(self._key, "call", "set")

    def wait(self, timeout: float | None = None) -> bool:
        return self._link.call(self._key, "call", "wait", timeout)


class RemoteList:
    """A list of the test's process, to append to (and count)."""

    def __init__(self, link: LinkedControls, key: int):
        self._link, self._key = link, key

    def append(self, item: Any) -> None:
        self._link.call(self._key, "call", "append", item)

    def __len__(self) -> int:
        return self._link.call(self._key, "call", "__len__")

    def __getitem__(self, index: int) -> Any:
        return self._link.call(self._key, "call", "__getitem__", index)
