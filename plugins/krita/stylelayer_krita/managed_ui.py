"""The "Server: Local (managed) / Remote URL" panel of Krita's dialog (the managed server: stylelayer_managed.py).

Installing, starting and asking the server's state all run in QThreads; a timer shows the install's progress and
the server's one true state line. When the managed server runs, `use_server(url, token)` hands its address to the
dialog, which connects to it like any other server.
"""

import os
from pathlib import Path

import stylelayer_managed as managed
from krita import Krita
from PyQt5.QtCore import QThread, QTimer, QUrl, pyqtSignal
from PyQt5.QtGui import QDesktopServices
from PyQt5.QtWidgets import (
    QComboBox,
    QHBoxLayout,
    QLabel,
    QMessageBox,
    QProgressBar,
    QPushButton,
    QRadioButton,
    QVBoxLayout,
    QWidget,
)

SETTINGS_GROUP = "stylelayer"
POLL_MS = 500  # progress and state refresh
STATE_EVERY = 4  # ask the server its state every 4th poll (2 s)
HARDWARE = (("Auto", None), ("NVIDIA CUDA", "cuda"), ("Apple MPS", "mps"), ("CPU", "cpu"))
IDLE_MINUTES = 60.0  # Krita also stops it when it quits


def install_folder():
    """Krita's resource folder (where it keeps the plug-in too) / stylelayer-server."""
    return Path(Krita.instance().getAppDataLocation()) / "stylelayer-server"


def plugin_wheel():
    return managed.find_wheel(Path(__file__).resolve().parent / "server")


def server_for_krita():
    return managed.ManagedServer(managed.Installation(install_folder()), idle_minutes=IDLE_MINUTES)


class _Call(QThread):
    done = pyqtSignal(bool, object)

    def __init__(self, fn, parent=None):
        super().__init__(parent)
        self._fn = fn

    def run(self):
        try:
            value = self._fn()
        except BaseException as exc:  # noqa: BLE001 - shown in the state line
            self.done.emit(False, exc)
            return
        self.done.emit(True, value)


class ManagedServerPanel(QWidget):
    """Mode radio buttons, the state line, progress, hardware choice, the actions and the install folder."""

    mode_changed = pyqtSignal(bool)  # True: managed
    use_server = pyqtSignal(str, str)  # url, token of the running managed server

    def __init__(self, parent=None):
        super().__init__(parent)
        self.server = server_for_krita()
        self.inst = self.server.inst
        self.server_state = None
        self.failure = ""
        self.busy = None  # the action running ("install", "start", ...) or None
        self._threads = set()
        self._announced = ""
        self._polls = 0
        self._size_due = True
        self.folder_text = f"Install folder: {self.inst.folder}"
        self._build()
        managed_mode = Krita.instance().readSetting(SETTINGS_GROUP, "server_mode", "managed") == "managed"
        (self.managed_radio if managed_mode else self.remote_radio).setChecked(True)
        self._mode_toggled()
        self._timer = QTimer(self)
        self._timer.timeout.connect(self._poll)
        self._timer.start(POLL_MS)
        self._ask_state()

    def _build(self):
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        row = QHBoxLayout()
        row.addWidget(QLabel("Server:"))
        self.managed_radio = QRadioButton("Local (managed)")
        self.managed_radio.setToolTip("A server on this computer that this plug-in installs, starts and stops.")
        self.remote_radio = QRadioButton("Remote URL")
        self.remote_radio.setToolTip("A server you run yourself (stylelayer serve), here or on another machine.")
        row.addWidget(self.managed_radio)
        row.addWidget(self.remote_radio)
        row.addStretch(1)
        layout.addLayout(row)
        self.managed_radio.toggled.connect(self._mode_toggled)

        self.box = QWidget()
        box = QVBoxLayout(self.box)
        box.setContentsMargins(0, 0, 0, 0)
        self.state_label = QLabel()
        self.state_label.setWordWrap(True)
        box.addWidget(self.state_label)
        self.progress = QProgressBar()
        self.progress.setVisible(False)
        box.addWidget(self.progress)
        hw = QHBoxLayout()
        hw.addWidget(QLabel("Hardware"))
        self.hardware_combo = QComboBox()
        for label, value in HARDWARE:
            self.hardware_combo.addItem(label, value)
        saved = Krita.instance().readSetting(SETTINGS_GROUP, "managed_backend", "")
        for i, (_label, value) in enumerate(HARDWARE):
            if value == (saved or None):
                self.hardware_combo.setCurrentIndex(i)
        self.hardware_combo.currentIndexChanged.connect(self._hardware_changed)
        hw.addWidget(self.hardware_combo)
        self.plan_label = QLabel()
        self.plan_label.setWordWrap(True)
        hw.addWidget(self.plan_label, 1)
        box.addLayout(hw)
        buttons = QHBoxLayout()
        self.buttons = {}
        for name, tip in (
            ("Install", "Install the server and PyTorch into the folder below."),
            ("Start", "Start the server (a job also starts it)."),
            ("Stop", "Stop the server (it also stops when idle and when Krita quits)."),
            ("Repair", "Finish or repair an install: finished steps and downloads are kept."),
            ("Upgrade", "Install this plug-in's server version; your style library and jobs are kept."),
            ("Uninstall", "Remove the server and PyTorch; your style library and jobs are kept."),
            ("View log", "Open the install log."),
        ):
            button = QPushButton(name)
            button.setToolTip(tip)
            button.clicked.connect(lambda _checked=False, n=name: self.action(n))
            buttons.addWidget(button)
            self.buttons[name] = button
        box.addLayout(buttons)
        self.folder_label = QLabel()
        self.folder_label.setWordWrap(True)
        box.addWidget(self.folder_label)
        layout.addWidget(self.box)

    # -- state
    def is_managed(self):
        return self.managed_radio.isChecked()

    def managed_url(self):
        """The running managed server's URL ('' when none was announced)."""
        return self._announced

    def _mode_toggled(self):
        self.box.setVisible(self.is_managed())
        Krita.instance().writeSetting(SETTINGS_GROUP, "server_mode", "managed" if self.is_managed() else "remote")
        self.mode_changed.emit(self.is_managed())
        self._announced = ""
        self._refresh()

    def _hardware_changed(self):
        Krita.instance().writeSetting(SETTINGS_GROUP, "managed_backend", self.hardware_combo.currentData() or "")
        self._refresh()

    def settings(self):
        wheel = plugin_wheel()
        if wheel is None:
            raise managed.InstallError("The plug-in is incomplete: it carries no server package; install it again.")
        return managed.Settings(wheel=wheel, backend=self.hardware_combo.currentData(), **managed.env_overrides())

    def state_text(self):
        return managed.state_line(self.inst, self.server_state, self.failure, self.inst.progress)

    def _refresh(self):
        self.state_label.setText(self.state_text())
        progress = self.inst.progress
        self.progress.setVisible(progress is not None)
        if progress is not None:
            if progress.total_bytes:
                self.progress.setRange(0, 1000)
                self.progress.setValue(int(1000 * progress.done_bytes / progress.total_bytes))
            else:
                self.progress.setRange(0, 0)  # busy, no percentage known
        try:
            self.plan_label.setText(managed.describe_plan(self.settings()))
        except managed.InstallError as exc:
            self.plan_label.setText(str(exc))
        installed = self.inst.state()
        running = self.server_state is not None and self.server_state.state in ("running", "starting")
        idle = self.busy is None
        enabled = {
            "Install": idle and installed == "not installed",
            "Start": idle and installed == "installed" and not running,
            "Stop": running and self.busy != "stop",
            "Repair": idle and installed in ("incomplete", "installed"),
            "Upgrade": idle and installed == "installed",
            "Uninstall": idle and installed in ("incomplete", "installed") and not running,
            "View log": self.inst.log_path.exists() or self.server.log_path.exists(),
        }
        for name, button in self.buttons.items():
            button.setEnabled(enabled[name])
        self.folder_label.setText(self.folder_text)

    def _poll(self):
        self._polls += 1
        if self._polls % STATE_EVERY == 0 and self.busy is None and self.is_managed():
            self._ask_state()
        self._refresh()

    def _ask_state(self):
        if any(getattr(t, "kind", "") == "state" for t in self._threads):
            return
        measure, self._size_due = self._size_due, False

        def ask():  # the folder's size only after a change: walking a venv of PyTorch takes a moment
            return self.server.status(), managed.folder_size_text(self.inst) if measure else None

        self._spawn("state", ask, self._got_state)

    def _got_state(self, ok, value):
        if not ok:
            return
        self.server_state, size = value
        if size is not None:
            self.folder_text = f"Install folder: {size}"
        if self.server_state.state == "running" and self.is_managed() and self._announced != self.server_state.url:
            self._announced = self.server_state.url
            self.use_server.emit(self.server_state.url, self.server.token())

    # -- actions
    def _spawn(self, kind, fn, on_done):
        thread = _Call(fn, self)
        thread.kind = kind
        self._threads.add(thread)
        thread.done.connect(on_done)
        thread.finished.connect(lambda: self._threads.discard(thread))
        thread.start()
        return thread

    def action(self, name):
        if name == "View log":
            log = self.inst.log_path if self.inst.log_path.exists() else self.server.log_path
            QDesktopServices.openUrl(QUrl.fromLocalFile(str(log)))
            return
        if name == "Uninstall":
            answer = QMessageBox.question(
                self,
                "Uninstall",
                f"Remove the server and PyTorch from {self.inst.folder}? Your style library and jobs are kept.",
            )
            if answer != QMessageBox.Yes:
                return
        self.failure = ""
        self.busy = name.lower()
        if name in ("Install", "Repair", "Upgrade"):
            try:
                settings = self.settings()
            except managed.InstallError as exc:
                self._done(False, exc)
                return
            fn = lambda: self._install_then_start(settings)  # noqa: E731
        elif name == "Start":
            fn = self.server.start_and_wait
        elif name == "Stop":
            fn = self.server.stop
        else:
            fn = self.inst.uninstall
        self._spawn(self.busy, fn, self._done)
        self._refresh()

    def _install_then_start(self, settings):
        if self.server.status().state in ("running", "starting"):
            self.server.stop()  # an Upgrade or Repair replaces the files the running server uses
        self.inst.install(settings)
        return self.server.start_and_wait()

    def start_if_installed(self):
        """The dialog opens (or a job needs it): start the managed server unless it runs."""
        if self.is_managed() and self.busy is None and self.inst.state() == "installed":
            current = self.server_state
            if current is None or current.state in ("stopped", "failed"):
                self.action("Start")

    def _done(self, ok, value):
        self.busy = None
        self._size_due = True
        if not ok:
            self.failure = str(value) if isinstance(value, managed.InstallError) else f"{type(value).__name__}: {value}"
        elif isinstance(value, managed.ServerState):
            self.server_state = value
            if value.state == "failed":
                self.failure = value.message
        self._ask_state()
        self._refresh()


def stop_managed_server():
    """Krita quits: stop its managed server (no stylelayer process outlives Krita)."""
    if os.environ.get("STYLELAYER_KEEP_SERVER"):
        return
    server = server_for_krita()
    if server.ready() is not None or server.status().state != "stopped":
        server.stop(timeout=10)
