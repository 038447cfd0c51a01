"""The plug-in's dialog: GIMP's own procedure dialog for the arguments, plus what a painter needs before OK: the
layer it paints, a connection test that says what is wrong (not reachable, not stylelayer, token, version), and
how long the job would take on that server (its /v1/estimate), updated as size, iterations or preset change.

Every request runs on a thread; its answer comes back to GTK's main loop through GLib.idle_add.
"""

import threading

import gi

gi.require_version("Gimp", "3.0")
gi.require_version("GimpUi", "3.0")
gi.require_version("Gtk", "3.0")
import stylelayer_logic as logic  # noqa: E402
import stylelayer_managed_gimp as managed_gimp  # noqa: E402
from gi.repository import Gimp, GimpUi, Gio, GLib, Gtk, Pango  # noqa: E402
from stylelayer_messages import NOT_CONNECTED_YET, PluginError, connection_text, error_message  # noqa: E402
from stylelayer_params import PRESETS, build_params, check_server_url, default_preset  # noqa: E402
from stylelayer_regions import parse_region_spec, with_region_style  # noqa: E402
from stylelayer_settings import TOKEN_PLACEHOLDER  # noqa: E402
from stylelayer_workflow import estimate, estimate_failed  # noqa: E402

FIELDS = [
    "preset",
    "iterations",
    "size",
    "style-strength",
    "preserve-colors",
    "server-url",
    "server-token",
    "regions",
]  # the style file has its own chooser, above them; the variation its check box; the seed and loss-plot
# arguments are for scripts
STATUS_LINES = 2  # the status and estimate lines keep this height (longer text is cut, whole in its tooltip)
ESTIMATE_DELAY_MS = 400  # the estimate is asked for once the painter stops changing values
STRENGTH_GAMMA = 3.46  # puts x1 in the middle of the slider's 0.1 to 10 (a log-like scale)


class StyleDialog:
    """run() -> True when the painter pressed OK. `make_client(url, token, timeout)` builds the HTTP client;
    `channels`: the names of the image's saved selections, each offered a style file (regions)."""

    def __init__(
        self, procedure, config, title, make_client, target_text, region, first_run, last_seed=None, channels=()
    ):
        GimpUi.init(procedure.get_name())
        self.config, self.make_client, self.region, self.first_run = config, make_client, region, first_run
        self.info = None  # the server's /v1/info once a test succeeded
        self._syncing = False
        self._check_seq = self._estimate_seq = 0
        self._estimate_source = None
        self.dialog = GimpUi.ProcedureDialog.new(procedure, config, title)
        token = self.dialog.get_widget("server-token", GimpUi.LabelEntry.__gtype__).get_entry()
        token.set_visibility(False)  # never shown
        token.set_placeholder_text(TOKEN_PLACEHOLDER)
        token.set_width_chars(len(TOKEN_PLACEHOLDER) + 2)
        strength = self.dialog.get_widget("style-strength", GimpUi.SpinScale.__gtype__)
        strength.set_scale_limits(0.1, 10.0)  # the readable range on the slider; typing gives 0.01 to 100
        strength.set_gamma(STRENGTH_GAMMA)
        self.dialog.fill(FIELDS)
        self._add_style_chooser()
        self._add_channel_styles(channels)
        self._add_panel(target_text, last_seed)
        if region is None:  # nothing this dialog could paint (an indexed image, no single layer): said, no OK
            self.dialog.set_response_sensitive(Gtk.ResponseType.OK, False)
        self._sync_preset()  # the preset that matches the values GIMP restored
        for name in ("preset", "iterations", "size", "style-strength", "preserve-colors"):
            config.connect(f"notify::{name}", self._changed)
        for name in ("server-url", "server-token"):
            config.connect(f"notify::{name}", self._server_changed)

    def _add_style_chooser(self):
        """The style file, chosen among files that exist. The argument itself takes any path (FileChooserAction.ANY),
        so that a script naming a missing file hears so from the plug-in, not GIMP's "out of range"."""
        chooser = GimpUi.FileChooser.new(
            Gimp.FileChooserAction.OPEN, "Style ima_ge", "Style image", self.config.get_property("style-file")
        )
        chooser.set_tooltip_text("A painting or picture whose look (brushwork, texture, colours) is applied")
        chooser.connect("notify::file", self._style_chosen)
        chooser.set_margin_start(12)
        chooser.set_margin_end(12)
        area = self.dialog.get_content_area()
        area.pack_start(chooser, False, False, 4)
        area.reorder_child(chooser, 0)
        chooser.show_all()

    def _style_chosen(self, chooser, _pspec):
        self.config.set_property("style-file", chooser.get_file())

    def _add_channel_styles(self, channels):
        """A style file chooser per saved selection of the image, so a painter picks each region's style instead of
        typing paths: a choice writes "channel=file" into the regions argument above (still editable), and the
        choosers start from what that argument held last time."""
        if not channels:
            return
        try:
            chosen = dict(parse_region_spec(self.config.get_property("regions") or ""))
        except PluginError:
            chosen = {}
        grid = Gtk.Grid(column_spacing=8, row_spacing=4)
        heading = Gtk.Label(label="A style per saved selection (empty: not a region):", xalign=0.0)
        grid.attach(heading, 0, 0, 2, 1)
        for row, name in enumerate(channels, 1):
            path = chosen.get(name)
            chooser = GimpUi.FileChooser.new(
                Gimp.FileChooserAction.OPEN, "", f"Style for “{name}”", Gio.File.new_for_path(path) if path else None
            )
            chooser.set_hexpand(True)
            chooser.connect("notify::file", self._channel_style_chosen, name)
            grid.attach(Gtk.Label(label=name, xalign=0.0), 0, row, 1, 1)
            grid.attach(chooser, 1, row, 1, 1)
        grid.set_margin_start(12)
        grid.set_margin_end(12)
        self.dialog.get_content_area().pack_start(grid, False, False, 4)
        grid.show_all()
        logic.log_status(
            "channels: " + "; ".join(f"{name}={chosen.get(name, '')}" for name in channels)
        )  # what the choosers show

    def _channel_style_chosen(self, chooser, _pspec, name):
        file = chooser.get_file()
        try:
            spec = with_region_style(self.config.get_property("regions") or "", name, file.get_path() if file else None)
        except PluginError as exc:
            self.status.set_text(error_message(exc))
            return
        self.config.set_property("regions", spec)

    def _add_panel(self, target_text, last_seed):
        area = self.dialog.get_content_area()
        managed_panel = managed_gimp.make_panel(self.config, lambda _managed: None)  # Local (managed) / Remote URL
        managed_panel.set_margin_start(12)
        managed_panel.set_margin_end(12)
        area.pack_start(managed_panel, False, False, 4)
        managed_panel.show_all()
        managed_panel.refresh()  # hides what Remote URL does not use
        target = Gtk.Label(label=target_text, xalign=0.0)
        target.set_line_wrap(True)
        row = Gtk.Box(orientation=Gtk.Orientation.HORIZONTAL, spacing=8)
        self.test_button = Gtk.Button.new_with_mnemonic("_Test connection")
        self.test_button.set_tooltip_text("Check the server URL and token")
        self.test_button.connect("clicked", lambda _button: self.test_connection())
        self.status = Gtk.Label(label=NOT_CONNECTED_YET, xalign=0.0, yalign=0.0)
        self.status.set_line_wrap(True)
        self.status.set_line_wrap_mode(Pango.WrapMode.WORD_CHAR)
        self.status.set_max_width_chars(60)
        self._fixed_height(self.status)
        row.pack_start(self.test_button, False, False, 0)
        row.pack_start(self.status, True, True, 0)
        self.estimate = Gtk.Label(label="", xalign=0.0, yalign=0.0)
        self.estimate.set_line_wrap(True)
        self.estimate.set_max_width_chars(70)
        self._fixed_height(self.estimate)
        widgets = [target, row, self.estimate]
        if last_seed:  # the variation the last run painted: a new one unless kept
            keep = Gtk.CheckButton(label=f"Keep the last run's variation ({last_seed}) instead of a new one")
            keep.set_active(self.config.get_property("seed") == last_seed)
            keep.connect("toggled", lambda box: self.config.set_property("seed", last_seed if box.get_active() else 0))
            widgets.insert(1, keep)
        elif self.config.get_property("seed") > 0:
            self.config.set_property("seed", 0)
        for widget in widgets:
            widget.set_margin_start(12)
            widget.set_margin_end(12)
            area.pack_start(widget, False, False, 4)
            widget.show_all()
        logic.log_status("target: " + target_text)

    @staticmethod
    def _fixed_height(label):
        """STATUS_LINES lines tall from the start, longer text cut (whole in the tooltip): no button moves."""
        label.set_ellipsize(Pango.EllipsizeMode.END)
        label.set_lines(STATUS_LINES)
        label.set_size_request(-1, label.create_pango_layout("X").get_pixel_size()[1] * STATUS_LINES)

    def run(self):
        GLib.idle_add(self.test_connection, True)  # connected at once when the server is there
        ok = self.dialog.run()
        self.dialog.destroy()
        return bool(ok)

    # -- values
    def _sync_preset(self):
        size, iterations = self.config.get_property("size"), self.config.get_property("iterations")
        self._syncing = True
        self.config.set_property("preset", logic.preset_of(size, iterations))
        self._syncing = False

    def _changed(self, config, pspec):
        if not self._syncing:
            self._syncing = True
            if pspec.name == "preset":  # a preset fills in size and iterations
                preset = config.get_property("preset")
                if preset in PRESETS:
                    size, iterations = PRESETS[preset]
                    config.set_property("size", size)
                    config.set_property("iterations", iterations)
            elif pspec.name in ("size", "iterations"):  # edited values: the preset that matches them, or custom
                config.set_property(
                    "preset", logic.preset_of(config.get_property("size"), config.get_property("iterations"))
                )
            self._syncing = False
        self._schedule_estimate()

    def params(self):
        size, iterations = logic.preset_size_iterations(
            self.config.get_property("preset"), self.config.get_property("size"), self.config.get_property("iterations")
        )
        return build_params(
            iterations=iterations,
            strength=self.config.get_property("style-strength"),
            preserve_colors=self.config.get_property("preserve-colors"),
            size=size,
        )

    def _client(self, timeout):
        return self.make_client(
            self.config.get_property("server-url"), self.config.get_property("server-token"), timeout
        )

    # -- server
    def _set_status(self, text):
        self.status.set_text(text)
        logic.log_status("status: " + text)

    def _server_changed(self, _config, _pspec):
        self._check_seq += 1
        self.info = None
        self.test_button.set_sensitive(True)  # a check still under way is about the old address
        self._set_status(NOT_CONNECTED_YET)
        self._request_estimate()  # at once: no estimate of another server stays up

    def test_connection(self, quiet=False):
        """Test the server on a thread; `quiet` (the check as the dialog opens): a failure leaves "Not connected
        yet" instead of greeting the painter with an error before any input."""
        self._check_seq += 1
        seq = self._check_seq
        try:
            client = self._client(5)
        except Exception as exc:  # noqa: BLE001 - a malformed URL
            self._tested(seq, quiet, False, exc)
            return False
        if not quiet:
            self._set_status("Testing the connection…")
        self.test_button.set_sensitive(False)
        self._in_thread(client.probe, lambda ok, value: self._tested(seq, quiet, ok, value))
        return False  # (GLib.idle_add: once)

    def _tested(self, seq, quiet, ok, value):
        if seq != self._check_seq:
            return  # about a URL or token that has changed since (a newer check is under way)
        self.test_button.set_sensitive(True)
        if not ok:
            self.info = None
            message = error_message(value)
            self._set_status(NOT_CONNECTED_YET if quiet else "Not connected: " + message)
            self.status.set_tooltip_text(message)
        else:
            self.info = value
            url = self.config.get_property("server-url")
            url = url if managed_gimp.is_managed(url) else check_server_url(url)
            self._set_status(connection_text(value, url))
            self.status.set_tooltip_text(self.status.get_text())
            if self.first_run:  # no values of an earlier run: the preset this server's device is good for
                self.first_run = False
                self.config.set_property("preset", default_preset(str(value.get("device", ""))))
        self._request_estimate()  # at once: a server that is not there keeps no estimate

    # -- estimate
    def _schedule_estimate(self):
        if self._estimate_source is not None:
            GLib.source_remove(self._estimate_source)
        self._estimate_source = GLib.timeout_add(ESTIMATE_DELAY_MS, self._request_estimate)

    def _request_estimate(self):
        self._estimate_source = None
        self._estimate_seq += 1
        seq = self._estimate_seq
        if self.region is None:
            self._set_estimate("")
            return False
        if self.info is None:
            self._set_estimate("Test the connection to see how long this will take.")
            return False
        try:
            params, client = self.params(), self._client(10)
        except Exception as exc:  # noqa: BLE001 - a value the server would refuse
            self._set_estimate(error_message(exc))
            return False
        width, height = self.region
        self._in_thread(
            lambda: estimate(client, width, height, params), lambda ok, value: self._estimated(seq, ok, value)
        )
        return False

    def _estimated(self, seq, ok, value):
        if seq == self._estimate_seq:  # else the values changed since this was asked
            self._set_estimate(value if ok else estimate_failed(value))

    def _set_estimate(self, text):
        self.estimate.set_text(text)
        self.estimate.set_tooltip_text(text or None)
        logic.log_status("estimate: " + text)

    @staticmethod
    def _in_thread(call, done):
        """call() on a thread; done(ok, value_or_exception) back on GTK's main loop."""

        def work():
            try:
                value, ok = call(), True
            except Exception as exc:  # noqa: BLE001 - handed to `done`
                value, ok = exc, False
            GLib.idle_add(lambda: done(ok, value) and False)

        threading.Thread(target=work, name="stylelayer-dialog", daemon=True).start()
