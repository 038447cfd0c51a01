"""GIMP's side of the managed server (stylelayer_managed.py): where it lives, the word `managed` in the server URL,
and the dialog's "Server: Local (managed) / Remote URL" panel.

GIMP runs a plug-in process per filter call, so the server is started detached and found again by the next run
through its ready file; it stops by itself after IDLE_MINUTES without work (GIMP has no "quit" signal for a
plug-in). A script can use it too: server-url `managed`.
"""

import os
import threading
from pathlib import Path

import stylelayer_managed as managed
from stylelayer_messages import PluginError

MANAGED_URL = "managed"  # the server-url that means "this plug-in's own server"
IDLE_MINUTES = 30.0
POLL_MS = 500


def install_folder():
    """GIMP's settings folder (~/.config/GIMP/3.0 and the like) / stylelayer-server."""
    from gi.repository import Gimp

    return Path(Gimp.directory()) / "stylelayer-server"


def plugin_wheel():
    return managed.find_wheel(Path(os.path.dirname(os.path.abspath(__file__))) / "server")


def server():
    return managed.ManagedServer(managed.Installation(install_folder()), idle_minutes=IDLE_MINUTES)


def is_managed(url):
    return (url or "").strip().lower() == MANAGED_URL


def running_server(timeout=600.0):
    """(url, token) of the managed server, started if needed (stylelayer_workflow.connect's `managed`); PluginError
    saying what to do when it is not installed or does not start."""
    srv = server()
    state = srv.inst.state()
    if state != "installed":
        raise PluginError(
            "The local server is not installed: open the filter's dialog, choose Server: Local (managed) and press"
            " Install."
            if state == "not installed"
            else managed.state_line(srv.inst, None)
        )
    try:
        current = srv.start_and_wait(timeout)
    except managed.InstallError as exc:
        raise PluginError(str(exc)) from None
    if current.state != "running":
        raise PluginError(current.message or "The local server did not start in time; press Start again.")
    return current.url, srv.token()


def make_panel(config, on_mode):
    """The Gtk panel (imported here: the rest of this module runs without Gtk)."""
    import gi

    gi.require_version("Gtk", "3.0")
    from gi.repository import GLib, Gtk

    class ManagedPanel(Gtk.Box):
        """Mode radios, one state line, progress, the actions and the install folder. Work runs on threads; a
        GLib timer shows it."""

        def __init__(self):
            super().__init__(orientation=Gtk.Orientation.VERTICAL, spacing=4)
            self.srv = server()
            self.inst = self.srv.inst
            self.state = None
            self.failure = ""
            self.busy = None
            self._asking = False
            self._size_due = True
            self.size_text = str(self.inst.folder)
            row = Gtk.Box(orientation=Gtk.Orientation.HORIZONTAL, spacing=8)
            row.pack_start(Gtk.Label(label="Server:"), False, False, 0)
            self.managed_radio = Gtk.RadioButton.new_with_label(None, "Local (managed)")
            self.remote_radio = Gtk.RadioButton.new_with_label_from_widget(self.managed_radio, "Remote URL")
            row.pack_start(self.managed_radio, False, False, 0)
            row.pack_start(self.remote_radio, False, False, 0)
            self.pack_start(row, False, False, 0)
            self.label = Gtk.Label(label="", xalign=0.0)
            self.label.set_line_wrap(True)
            self.label.set_max_width_chars(70)
            self.pack_start(self.label, False, False, 0)
            self.bar = Gtk.ProgressBar()
            self.pack_start(self.bar, False, False, 0)
            buttons = Gtk.Box(orientation=Gtk.Orientation.HORIZONTAL, spacing=4)
            self.buttons = {}
            for name in ("Install", "Start", "Stop", "Repair", "Upgrade", "Uninstall", "View log"):
                button = Gtk.Button(label=name)
                button.connect("clicked", lambda _b, n=name: self.action(n))
                buttons.pack_start(button, False, False, 0)
                self.buttons[name] = button
            self.pack_start(buttons, False, False, 0)
            self.folder = Gtk.Label(label="", xalign=0.0)
            self.folder.set_line_wrap(True)
            self.pack_start(self.folder, False, False, 0)
            self.managed_radio.set_active(is_managed(config.get_property("server-url")))
            self.remote_radio.set_active(not self.managed_radio.get_active())
            self.managed_radio.connect("toggled", self._toggled)
            GLib.timeout_add(POLL_MS, self._poll)
            self._ask()
            self.refresh()

        def _toggled(self, _radio):
            managed_mode = self.managed_radio.get_active()
            if managed_mode:
                config.set_property("server-url", MANAGED_URL)
            elif is_managed(config.get_property("server-url")):
                config.set_property("server-url", "http://127.0.0.1:8765")
            on_mode(managed_mode)
            self.refresh()

        def settings(self):
            wheel = plugin_wheel()
            if wheel is None:
                raise managed.InstallError("The plug-in is incomplete: it carries no server package; install it again.")
            return managed.Settings(wheel=wheel, **managed.env_overrides())

        def refresh(self):
            self.label.set_text(managed.state_line(self.inst, self.state, self.failure, self.inst.progress))
            progress = self.inst.progress
            if progress is not None and progress.total_bytes:
                self.bar.set_fraction(progress.done_bytes / progress.total_bytes)
            elif progress is not None:
                self.bar.pulse()
            else:
                self.bar.set_fraction(0.0)
            installed = self.inst.state()
            running = self.state is not None and self.state.state in ("running", "starting")
            idle = self.busy is None
            enabled = {
                "Install": idle and installed == "not installed",
                "Start": idle and installed == "installed" and not running,
                "Stop": running,
                "Repair": idle and installed in ("incomplete", "installed"),
                "Upgrade": idle and installed == "installed",
                "Uninstall": idle and installed in ("incomplete", "installed") and not running,
                "View log": self.inst.log_path.exists(),
            }
            for name, button in self.buttons.items():
                button.set_sensitive(enabled[name])
            try:
                plan = managed.describe_plan(self.settings())
            except managed.InstallError as exc:
                plan = str(exc)
            self.folder.set_text(f"{plan}\nInstall folder: {self.size_text}")
            for widget in (self.label, self.bar, self.folder, *self.buttons.values()):
                widget.set_visible(self.managed_radio.get_active())

        def _poll(self):
            if self.busy is None and not self._asking:
                self._ask()
            self.refresh()
            return True

        def _ask(self):
            self._asking = True
            measure, self._size_due = self._size_due, False

            def work():  # the folder's size only after a change: walking a venv of PyTorch takes a moment
                state = self.srv.status()
                GLib.idle_add(self._got, state, managed.folder_size_text(self.inst) if measure else None)

            threading.Thread(target=work, daemon=True).start()

        def _got(self, state, size):
            self._asking = False
            self.state = state
            if size is not None:
                self.size_text = size
            return False

        def action(self, name):
            if name == "View log":
                Gtk.show_uri_on_window(None, self.inst.log_path.as_uri(), 0)
                return
            self.failure = ""
            self.busy = name
            try:
                settings = self.settings() if name in ("Install", "Repair", "Upgrade") else None
            except managed.InstallError as exc:
                self._done(exc)
                return

            def work():
                try:
                    if settings is not None:
                        if self.srv.status().state in ("running", "starting"):
                            self.srv.stop()
                        self.inst.install(settings)
                        result = self.srv.start_and_wait()
                    elif name == "Start":
                        result = self.srv.start_and_wait()
                    elif name == "Stop":
                        result = self.srv.stop()
                    else:
                        result = self.inst.uninstall()
                except Exception as exc:  # noqa: BLE001 - shown in the state line
                    result = exc
                GLib.idle_add(self._done, result)

            threading.Thread(target=work, daemon=True).start()
            self.refresh()

        def _done(self, result):
            self.busy = None
            self._size_due = True
            if isinstance(result, Exception):
                self.failure = str(result) if isinstance(result, managed.InstallError) else repr(result)
            elif isinstance(result, managed.ServerState) and result.state == "failed":
                self.failure = result.message
            self._ask()
            self.refresh()
            return False

    return ManagedPanel()
