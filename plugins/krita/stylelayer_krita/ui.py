"""PyQt5 side of the plug-in: worker threads and the "Style Transfer" dialog.

Krita objects are only touched on the GUI thread (`transfer.prepare` / `transfer.insert_result`); every HTTP
request (the job, the connection check, estimates, the library) runs in a QThread that reports back through
signals, so Krita keeps painting.
"""

from __future__ import annotations

import os
from typing import Any

from krita import Krita
from PyQt5.QtCore import QPointF, QSize, Qt, QThread, QTimer, pyqtSignal
from PyQt5.QtGui import QIcon, QImage, QPainter, QPen, QPixmap, QPolygonF
from PyQt5.QtWidgets import (
    QButtonGroup,
    QCheckBox,
    QComboBox,
    QDialog,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QMessageBox,
    QProgressBar,
    QPushButton,
    QRadioButton,
    QSlider,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)
from stylelayer_image import style_label
from stylelayer_messages import NOT_CONNECTED_YET, PluginError, connection_text, error_message
from stylelayer_params import (
    DEFAULT_PRESET,
    DEFAULT_SERVER_URL,
    MAX_ITERATIONS,
    MAX_SEED,
    MAX_SIZE,
    MAX_STRENGTH,
    MIN_STRENGTH,
    PRESET_LABELS,
    PRESETS,
    STRENGTH_SLIDER,
    build_params,
    check_server_url,
    check_style_file,
    default_preset,
    matching_preset,
    new_seed,
    preset_values,
    strength_from_slider,
    strength_to_slider,
)
from stylelayer_regions import RegionStyle, region_form, regions_label
from stylelayer_settings import TOKEN_PLACEHOLDER, migrate_token, save_token, token_path
from stylelayer_status import progress_fraction, progress_text
from stylelayer_workflow import connect, estimate, estimate_failed, run_job

from . import logic, transfer
from .krita_ops import KritaLayerOps
from .qtcodec import QtCodec
from .regions_ui import RegionsPanel

SETTINGS_GROUP = "stylelayer"
PREVIEW_SIDE = 256
PREVIEW_HINT = "A live preview appears here while the style is applied."
WATCH_MS = 500  # how often the dialog looks at Krita's active document, layer and selection
ESTIMATE_DELAY_MS = 400  # the estimate is asked for once the painter stops changing values
CONNECTION_ERRORS = (
    "JobInterrupted",
    "ServerUnavailable",
    "TimedOut",
    "ConnectionLost",
    "NotStylelayer",
    "WrongToken",
    "VersionMismatch",
)


def read_setting(key, default):
    return Krita.instance().readSetting(SETTINGS_GROUP, key, str(default))


def write_setting(key, value):
    Krita.instance().writeSetting(SETTINGS_GROUP, key, str(value))


# ---- threads -------------------------------------------------------------------------------------------------
class CallThread(QThread):
    """Runs `fn()` off the GUI thread; `done(ok, value_or_exception)`."""

    done = pyqtSignal(bool, object)

    def __init__(self, fn, parent=None):
        super().__init__(parent)
        self._fn = fn

    def run(self):
        try:
            value = self._fn()
        except BaseException as exc:  # noqa: BLE001 - everything goes back to the GUI thread
            self.done.emit(False, exc)
            return
        self.done.emit(True, value)


class JobThread(QThread):
    """The server job: progress(status, preview_png_or_None) and losses(new_points) while it runs,
    done(ok, png_or_exception)."""

    progress = pyqtSignal(object, object)
    losses = pyqtSignal(object)
    done = pyqtSignal(bool, object)

    def __init__(self, source, client, style_png, style_id, params, parent=None, regions=()):
        super().__init__(parent)
        self._args = (source, client, style_png, style_id, params)
        self._regions = regions  # stylelayer_regions.region_form's fields
        self._cancel = False

    def cancel(self):
        self._cancel = True

    def run(self):
        source, client, style_png, style_id, params = self._args
        try:
            result = run_job(
                client,
                source.content_png,
                style_png,
                style_id,
                params,
                on_progress=lambda status, preview: self.progress.emit(status, preview),
                should_cancel=lambda: self._cancel,
                on_losses=self.losses.emit,
                regions=self._regions,
            )
        except BaseException as exc:  # noqa: BLE001
            self.done.emit(False, exc)
            return
        self.done.emit(True, result.png)


# ---- loss curve ----------------------------------------------------------------------------------------------
class LossCurve(QWidget):
    """The total loss of every iteration so far, on a log scale (logic.loss_polyline), drawn as it arrives."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.totals = []
        self.setToolTip("Total loss per iteration (log scale): it falls fast, then flattens as the style settles.")

    def add(self, points):
        self.totals.extend(point.get("total") for point in points)
        self.update()

    def clear(self):
        self.totals = []
        self.update()

    def paintEvent(self, _event):
        painter = QPainter(self)
        painter.setPen(QPen(self.palette().mid().color()))
        painter.drawRect(self.rect().adjusted(0, 0, -1, -1))
        line = logic.loss_polyline(self.totals, self.width(), self.height())
        if len(line) > 1:
            painter.setRenderHint(QPainter.Antialiasing)
            painter.setPen(QPen(self.palette().highlight().color(), 1.5))
            painter.drawPolyline(QPolygonF([QPointF(x, y) for x, y in line]))
        painter.end()


# ---- dialog --------------------------------------------------------------------------------------------------
class StyleTransferDialog(QDialog):
    """Non-modal: Krita stays usable while a job runs. `finished_run(ok, message)` after each run.

    It names the layer it will paint and keeps to the layer the painter chose (logic.follow_target), tests the
    server (reachable, stylelayer, token, version) and shows how long the job would take before Apply.
    """

    finished_run = pyqtSignal(bool, str)

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setWindowTitle("Style Transfer")
        self.codec = QtCodec()
        self.ops = KritaLayerOps()
        self.job = None
        self.source: transfer.Source | None = None  # what the running job was read from
        self.pending: str | None = None  # the running job's style label
        self._threads = set()
        self.show_message = self._message_box  # tests replace this to record instead of blocking
        self.target_doc: Any = None  # Krita's Document and Node (libkis, duck-typed)
        self.target_node: Any = None
        self.created = None  # id of the layer the last run added (the target does not follow Krita onto it)
        self.server_info = None  # /v1/info of the server as last checked; None: not checked or not reachable
        self._check_seq = self._estimate_seq = 0
        self._syncing = False  # preset, size and iterations set each other: no echo
        self._estimate_timer = QTimer(self)
        self._estimate_timer.setSingleShot(True)
        self._estimate_timer.timeout.connect(self.request_estimate)
        self._build()
        self._load_settings()
        self._watch = QTimer(self)
        self._watch.timeout.connect(self.refresh_target)
        self._watch.start(WATCH_MS)
        self.refresh_target()

    # -- layout
    def _build(self):
        """The dialog top to bottom: the server, the target layer, the style, the options beside the preview, the
        progress and the buttons. Each part has its builder; the widgets the dialog reads become attributes."""
        layout = QVBoxLayout(self)
        layout.addWidget(self._build_server())
        layout.addWidget(self._build_target())
        layout.addWidget(self._build_style())
        self.regions_panel = RegionsPanel(self.chosen_style, lambda ok, message: self.show_message(ok, message))
        layout.addWidget(self.regions_panel)
        middle = QHBoxLayout()
        middle.addWidget(self._build_options(), 1)
        middle.addWidget(self._build_preview())
        layout.addLayout(middle)
        self._build_progress(layout)
        layout.addLayout(self._build_buttons())

    def _build_server(self):
        """Local (managed) or remote: the managed server's panel, the address and token, the status line."""
        server = QGroupBox("Server")
        server_layout = QVBoxLayout(server)
        from .managed_ui import ManagedServerPanel  # the managed server's own panel (managed_ui.py)

        self.managed_panel = ManagedServerPanel(self)
        server_layout.addWidget(self.managed_panel)
        server_layout.addLayout(self._build_address())
        self.status_label = QLabel(NOT_CONNECTED_YET)
        self.status_label.setWordWrap(True)
        server_layout.addWidget(self.status_label)
        self.url_edit.textEdited.connect(self._server_changed)
        self.token_edit.textEdited.connect(self._server_changed)
        self.managed_panel.use_server.connect(self._use_managed_server)
        self.managed_panel.mode_changed.connect(self._managed_mode)
        self._managed_mode(self.managed_panel.is_managed())
        return server

    def _build_address(self):
        """URL, token (never shown) and Test connection, in one row."""
        row = QHBoxLayout()
        self.url_edit = QLineEdit()
        self.url_edit.setPlaceholderText(DEFAULT_SERVER_URL)
        self.url_edit.setToolTip(
            "Address of the stylelayer server: http://127.0.0.1:8765 on this machine (start it with "
            "`stylelayer serve`), or the URL `stylelayer serve --host 0.0.0.0` prints on another machine."
        )
        self.url_edit.setMinimumWidth(self.url_edit.fontMetrics().horizontalAdvance("http://192.168.100.100:8765") + 16)
        self.token_edit = QLineEdit()
        self.token_edit.setEchoMode(QLineEdit.Password)
        self.token_edit.setPlaceholderText(TOKEN_PLACEHOLDER)
        self.token_edit.setMinimumWidth(self.token_edit.fontMetrics().horizontalAdvance(TOKEN_PLACEHOLDER) + 16)
        self.token_edit.setToolTip(
            "The token the server was started with (its STYLELAYER_TOKEN or --token-file), only for a server on "
            f"another machine. Kept in {token_path()}, readable by you only, and never shown."
        )
        self.test_button = QPushButton("Test connection")
        self.test_button.setToolTip("Check the address and token, and load the server's style library.")
        self.test_button.clicked.connect(self.check_connection)
        row.addWidget(QLabel("URL"))
        row.addWidget(self.url_edit, 2)
        row.addWidget(QLabel("Token"))
        row.addWidget(self.token_edit, 1)
        row.addWidget(self.test_button)
        return row

    def _build_target(self):
        self.target_label = QLabel()
        self.target_label.setWordWrap(True)
        self.target_label.setToolTip(
            "The layer a run paints: the active layer when you choose it; the dialog stays with it when Krita "
            "activates the new layer after a run."
        )
        return self.target_label

    def _build_style(self):
        """An image file (with Add to library), or a style from the server's library."""
        style = QGroupBox("Style")
        style_layout = QVBoxLayout(style)
        self.file_radio = QRadioButton("Image file")
        self.library_radio = QRadioButton("Server library")
        self.file_radio.setChecked(True)
        group = QButtonGroup(self)
        group.addButton(self.file_radio)
        group.addButton(self.library_radio)
        file_row = QHBoxLayout()
        self.style_edit = QLineEdit()
        self.style_edit.setPlaceholderText("a painting whose look you want")
        self.style_edit.textChanged.connect(self.style_edit.setToolTip)  # the full path, when it is cut
        browse = QPushButton("Browse…")
        browse.clicked.connect(self.browse_style)
        self.add_button = QPushButton("Add to library")
        self.add_button.setToolTip("Store this image in the server's style library, to pick it again later.")
        self.add_button.clicked.connect(self.add_to_library)
        file_row.addWidget(self.file_radio)
        file_row.addWidget(self.style_edit, 1)
        file_row.addWidget(browse)
        file_row.addWidget(self.add_button)
        style_layout.addLayout(file_row)
        style_layout.addWidget(self.library_radio)
        style_layout.addWidget(self._build_library())
        self.library_hint = QLabel("The server's library is empty: choose an image file, then Add to library.")
        self.library_hint.setWordWrap(True)
        style_layout.addWidget(self.library_hint)
        self.library.hide()
        return style

    def _build_library(self):
        """The server's styles as thumbnails: one row, then it scrolls."""
        self.library = QListWidget()
        self.library.setViewMode(QListWidget.IconMode)
        self.library.setIconSize(QSize(80, 80))
        self.library.setGridSize(QSize(96, 108))  # room for the name under the thumbnail
        self.library.setWordWrap(True)
        self.library.setMovement(QListWidget.Static)
        self.library.setResizeMode(QListWidget.Adjust)
        self.library.setFixedHeight(108 + 2 * self.library.frameWidth() + 8)  # one full row, then it scrolls
        self.library.setToolTip("Styles stored on the server.")
        self.library.itemSelectionChanged.connect(lambda: self.library_radio.setChecked(True))
        return self.library

    def _build_options(self):
        """Preset, iterations, strength, colours, working size, variation and the estimate."""
        options = QGroupBox("Options")
        form = QFormLayout(options)
        self.preset_combo = QComboBox()
        for key in PRESETS:
            self.preset_combo.addItem(PRESET_LABELS[key], key)
        self.preset_combo.addItem("Custom", "")
        self.preset_combo.setToolTip(
            "Fills in working size and iterations. Preview is a quick look; Full resolution paints the layer at "
            "its own size, coarse to fine, so it has the canvas's detail at 100% zoom (and takes longest)."
        )
        self.preset_combo.activated.connect(lambda _index: self.set_preset(self.preset_combo.currentData()))
        self.iterations_spin = QSpinBox()
        self.iterations_spin.setRange(1, MAX_ITERATIONS)
        self.iterations_spin.setSingleStep(10)
        self.iterations_spin.setToolTip(
            "How long the server paints: more iterations take the style further and take longer. With levels "
            "(full resolution), this is the first level's count; each finer level runs half as many."
        )
        self.preserve_check = QCheckBox("Keep the layer's own colours")
        self.preserve_check.setToolTip("Take only the style's strokes and texture, not its palette.")
        self.size_spin = QSpinBox()
        self.size_spin.setRange(0, MAX_SIZE)
        self.size_spin.setSingleStep(64)
        self.size_spin.setSpecialValueText("full resolution")
        self.size_spin.setSuffix(" px")
        self.size_spin.setToolTip(
            "The longest side the server paints at; the result is scaled back to the layer's size. Smaller is "
            "much faster and gives bigger strokes; 0 (full resolution) paints at the layer's own size."
        )
        for spin in (self.iterations_spin, self.size_spin):
            spin.valueChanged.connect(self._values_changed)
        self.preserve_check.toggled.connect(lambda _on: self.schedule_estimate())
        form.addRow("Preset", self.preset_combo)
        form.addRow("Iterations", self.iterations_spin)
        form.addRow("Style strength", self._build_strength())
        form.addRow("Colours", self.preserve_check)
        form.addRow("Working size", self.size_spin)
        form.addRow("Variation", self._build_variation())
        self.estimate_label = QLabel("")
        self.estimate_label.setWordWrap(True)
        self.estimate_label.setToolTip("From the server's own speed on its last jobs (before the first one, a guess).")
        form.addRow(self.estimate_label)
        return options

    def _build_strength(self):
        """A slider over the readable range (log scale) and a box for the full one, kept in step."""
        self.strength_slider = QSlider(Qt.Horizontal)
        self.strength_slider.setRange(0, STRENGTH_SLIDER[2])
        self.strength_spin = QDoubleSpinBox()
        self.strength_spin.setRange(MIN_STRENGTH, MAX_STRENGTH)
        self.strength_spin.setDecimals(2)
        self.strength_spin.setSingleStep(0.1)
        self.strength_spin.setPrefix("×")
        tip = (
            "How much of the style's brushwork takes over your picture: ×1 is the usual balance, toward ×10 "
            "paints over more of it, toward ×0.1 keeps more of your shapes and detail."
        )
        self.strength_slider.setToolTip(tip)
        self.strength_spin.setToolTip(tip + " Type a value for the full range (0.01 to 100).")
        self.strength_slider.valueChanged.connect(self._strength_from_slider)
        self.strength_spin.valueChanged.connect(self._strength_to_slider)
        strength = QHBoxLayout()
        strength.addWidget(QLabel("subtle"))
        strength.addWidget(self.strength_slider, 1)
        strength.addWidget(QLabel("strong"))
        strength.addWidget(self.strength_spin)
        return strength

    def _build_variation(self):
        self.seed_spin = QSpinBox()
        self.seed_spin.setRange(1, MAX_SEED)
        self.seed_spin.setToolTip("The variation a run paints: the same number and values give the same result.")
        self.keep_seed = QCheckBox("Keep")
        self.keep_seed.setToolTip("Paint this variation again; unticked, each Apply paints a new one.")
        variation = QHBoxLayout()
        variation.addWidget(self.seed_spin, 1)
        variation.addWidget(self.keep_seed)
        return variation

    def _build_preview(self):
        """The live preview and the loss curve while a job runs."""
        preview = QGroupBox("Preview")
        preview_layout = QVBoxLayout(preview)
        self.preview_label = QLabel()
        self.preview_label.setAlignment(Qt.AlignCenter)
        self.preview_label.setWordWrap(True)
        self.preview_label.setFixedSize(PREVIEW_SIDE, PREVIEW_SIDE * 3 // 4)
        self._clear_preview(PREVIEW_HINT)
        preview_layout.addWidget(self.preview_label)
        self.loss_curve = LossCurve()
        self.loss_curve.setFixedSize(PREVIEW_SIDE, PREVIEW_SIDE // 4)
        preview_layout.addWidget(self.loss_curve)
        return preview

    def _build_progress(self, layout):
        self.progress_bar = QProgressBar()
        self.progress_bar.setRange(0, 1000)
        self.progress_bar.setValue(0)
        self.progress_label = QLabel("")
        self.progress_label.setWordWrap(True)
        self.progress_label.setMinimumHeight(self.progress_label.fontMetrics().height())  # no jump on first text
        layout.addWidget(self.progress_bar)
        layout.addWidget(self.progress_label)

    def _build_buttons(self):
        buttons = QHBoxLayout()
        buttons.addStretch(1)
        self.run_button = QPushButton("Apply style")
        self.run_button.setToolTip("Paint the layer named above in the chosen style, as a new layer above it.")
        self.run_button.setDefault(True)
        self.run_button.clicked.connect(self.start)
        self.cancel_button = QPushButton("Close")
        self.cancel_button.clicked.connect(self.cancel_or_close)
        buttons.addWidget(self.run_button)
        buttons.addWidget(self.cancel_button)
        return buttons

    def _clear_preview(self, text):
        self.preview_label.clear()
        self.preview_label.setText(text)

    def _clear_stale(self):
        """The last run's preview, curve and progress belong to another document or server: gone."""
        if self.job is not None:
            return
        self._clear_preview(PREVIEW_HINT)
        self.loss_curve.clear()
        self.progress_bar.setValue(0)
        self.progress_label.setText("")

    # -- settings
    def _load_settings(self):
        self.url_edit.setText(read_setting("server_url", DEFAULT_SERVER_URL))
        old = read_setting("token", "")  # kept in kritarc (readable by others) before the token file
        self.token_edit.setText(migrate_token(old))
        if old:
            write_setting("token", "")
        self.style_edit.setText(read_setting("style_path", ""))
        preset = read_setting("preset", "")
        self.set_preset(preset if preset in PRESETS else DEFAULT_PRESET)
        self.iterations_spin.setValue(_int(read_setting("iterations", ""), self.iterations_spin.value()))
        self.size_spin.setValue(_int(read_setting("size", ""), self.size_spin.value()))
        self.strength_spin.setValue(_float(read_setting("strength", "1.0"), 1.0))
        self._strength_to_slider(self.strength_spin.value())
        self.preserve_check.setChecked(read_setting("preserve_colors", "false") == "true")
        self.seed_spin.setValue(_int(read_setting("seed", ""), 0) or new_seed())
        self.keep_seed.setChecked(read_setting("keep_seed", "false") == "true")

    def save_settings(self):
        if self.url_edit.text().strip() != self.managed_panel.managed_url():  # its token stays in its own file
            write_setting("server_url", self.url_edit.text().strip())
            save_token(self.token_edit.text())
        write_setting("style_path", self.style_edit.text().strip())
        write_setting("preset", self.preset_combo.currentData() or "custom")
        write_setting("iterations", self.iterations_spin.value())
        write_setting("size", self.size_spin.value())
        write_setting("strength", self.strength_spin.value())
        write_setting("preserve_colors", "true" if self.preserve_check.isChecked() else "false")
        write_setting("seed", self.seed_spin.value())
        write_setting("keep_seed", "true" if self.keep_seed.isChecked() else "false")

    # -- options
    def set_preset(self, name):
        """Select a preset by key ('preview', 'normal', 'high', 'full') and fill in its values."""
        if name not in PRESETS:
            return
        size, iterations = preset_values(name)
        self._syncing = True
        self.size_spin.setValue(size)
        self.iterations_spin.setValue(iterations)
        self.preset_combo.setCurrentIndex(self.preset_combo.findData(name))
        self._syncing = False
        self.schedule_estimate()

    def _values_changed(self):
        if not self._syncing:
            key = matching_preset(self.size_spin.value(), self.iterations_spin.value()) or ""
            self.preset_combo.setCurrentIndex(self.preset_combo.findData(key))
        self.schedule_estimate()

    def _strength_from_slider(self, position):
        if not self._syncing:
            self._syncing = True
            self.strength_spin.setValue(strength_from_slider(position))
            self._syncing = False
        self.schedule_estimate()

    def _strength_to_slider(self, value):
        if not self._syncing:
            self._syncing = True
            self.strength_slider.setValue(strength_to_slider(value))
            self._syncing = False

    def params(self):
        return build_params(
            self.iterations_spin.value(),
            self.strength_spin.value(),
            self.preserve_check.isChecked(),
            self.size_spin.value(),
            self.seed_spin.value(),
        )

    # -- helpers
    def _message_box(self, ok, message):
        if ok:
            return
        QMessageBox.warning(self, "Style Transfer", message[:1].upper() + message[1:])

    def _spawn(self, thread):
        self._threads.add(thread)
        thread.finished.connect(lambda: self._threads.discard(thread))
        thread.start()
        return thread

    def client(self, timeout=30):
        return connect(self.url_edit.text(), self.token_edit.text(), timeout)

    def _server_key(self):
        return (self.url_edit.text().strip(), self.token_edit.text().strip())

    # -- the layer to paint
    def refresh_target(self):
        """Follow Krita's active document and layer (see logic.follow_target) and name the target."""
        doc = Krita.instance().activeDocument()
        node = doc.activeNode() if doc is not None else None
        if node is not None and node.type().endswith("mask") and node.parentNode() is not None:
            node = node.parentNode()  # a mask is active (Krita activates a new one): its layer is the active layer
        same_doc = doc is not None and self.target_doc is not None and doc == self.target_doc
        if not same_doc:
            self.target_doc, self.target_node, self.created = doc, node, None
            self._clear_stale()
        elif self.target_node is None or self.target_node.parentNode() is None:  # none yet, or deleted
            self.target_node = node
        else:
            target_id, self.created = logic.follow_target(
                transfer.node_key(self.target_node), transfer.node_key(node), self.created
            )
            if target_id != transfer.node_key(self.target_node):
                self.target_node = node
        self.regions_panel.refresh(self.target_doc, self.target_node)
        text = self._target_text()
        if text != self.target_label.text():
            self.target_label.setText(text)
            self.schedule_estimate()

    def _target_text(self):
        doc, node = self.target_doc, self.target_node
        if doc is None:
            return "Open an image in Krita: the style is applied to one of its layers."
        name = os.path.basename(doc.fileName() or "") or doc.name() or "Untitled"
        try:
            rect, selection = transfer.region(doc, node)
        except PluginError as exc:
            return f"Nothing to paint in “{name}”: {exc}"
        where = " (the selection's part of it)" if selection is not None else ""
        return f"Paints layer “{node.name()}” of “{name}”: {rect.width}×{rect.height} px{where}."

    # -- server
    def _server_changed(self):
        """Another address or token: what was known about the old one no longer holds."""
        self._check_seq += 1
        self.server_info = None
        self.test_button.setEnabled(True)  # a check still under way is about the old address
        self.status_label.setText(NOT_CONNECTED_YET)
        self.status_label.setToolTip("")
        self.library.clear()
        self._show_library()
        self._clear_stale()
        self.request_estimate()

    def check_connection(self, quiet=False):
        """Test the server in the background; `quiet` (the check when the dialog opens, or after a run): a failure
        leaves "Not connected yet" instead of greeting the painter with an error before any input."""
        self._check_seq += 1
        seq, key = self._check_seq, self._server_key()
        try:
            client = self.client(timeout=5)
        except Exception as exc:  # noqa: BLE001 - a malformed URL
            self._connected(seq, key, quiet, False, exc)
            return
        if not quiet:
            self.status_label.setText("Testing the connection…")
        self.test_button.setEnabled(False)

        def fetch():
            info = client.probe()
            return info, *self._fetch_library(client)

        thread = CallThread(fetch, self)
        thread.done.connect(lambda ok, value: self._connected(seq, key, quiet, ok, value))
        self._spawn(thread)

    @staticmethod
    def _fetch_library(client):
        styles = client.styles()
        thumbs = []
        for style in styles[:60]:
            try:
                thumbs.append(client.style_thumbnail(style["id"]))
            except Exception:  # noqa: BLE001 - a missing thumbnail is not fatal
                thumbs.append(None)
        return styles, thumbs

    def _connected(self, seq, key, quiet, ok, value):
        if seq != self._check_seq or key != self._server_key():
            return  # an answer about an address or token that has changed since (a newer check is under way)
        self.test_button.setEnabled(True)
        if not ok:
            message = error_message(value)
            self.server_info = None
            self.status_label.setText(NOT_CONNECTED_YET if quiet else "Not connected: " + message)
            self.status_label.setToolTip(message)
            self.library.clear()
            self._show_library()
            self.request_estimate()  # at once: no estimate of a server that is not there stays up
            return
        info, styles, thumbs = value
        self.server_info = info
        self.status_label.setText(connection_text(info, check_server_url(key[0])))
        self.status_label.setToolTip(f"{info.get('device')}, weights {info.get('weights')}")
        self._fill_library(styles, thumbs)
        if read_setting("preset", "") == "":  # a first run: the preset this server's device is good for
            self.set_preset(default_preset(str(info.get("device", ""))))
        self.save_settings()
        self.schedule_estimate()

    def _fill_library(self, styles, thumbs, select=None):
        self.library.clear()
        for i, style in enumerate(styles):
            thumb = thumbs[i] if i < len(thumbs) else None
            item = QListWidgetItem(str(style.get("name") or style["id"]))
            item.setData(Qt.UserRole, style["id"])
            if thumb:
                image = QImage.fromData(thumb)
                if not image.isNull():
                    item.setIcon(QIcon(QPixmap.fromImage(image)))
            self.library.addItem(item)
            if style["id"] == select:
                self.library.setCurrentItem(item)
        self._show_library()

    def _show_library(self):
        has = self.library.count() > 0
        self.library.setVisible(has)
        self.library_hint.setVisible(not has)
        self.library_radio.setEnabled(has)
        if not has and self.library_radio.isChecked():
            self.file_radio.setChecked(True)

    def browse_style(self):
        path, _ = QFileDialog.getOpenFileName(
            self, "Style image", self.style_edit.text(), "Images (*.png *.jpg *.jpeg *.webp *.bmp *.tif *.tiff)"
        )
        if path:
            self.style_edit.setText(path)
            self.file_radio.setChecked(True)

    def add_to_library(self):
        """Upload the style file to the server's library, then show the library with it selected."""
        path = self.style_edit.text().strip()
        try:
            png, name, client = self.codec.load_style(path), style_label(path), self.client()
        except Exception as exc:  # noqa: BLE001
            self.show_message(False, error_message(exc))
            return
        self.add_button.setEnabled(False)
        self.status_label.setText(f"Adding “{name}” to the server's library…")

        def upload():
            added = client.add_style(name, png)
            return added, *self._fetch_library(client)

        thread = CallThread(upload, self)
        thread.done.connect(self._added)
        self._spawn(thread)

    def _added(self, ok, value):
        self.add_button.setEnabled(True)
        if not ok:
            message = error_message(value)
            self.status_label.setText("Not added to the library: " + message)
            self.show_message(False, message)
            return
        added, styles, thumbs = value
        self._fill_library(styles, thumbs, select=added["id"])
        connected = connection_text(self.server_info, self.client().base_url) + " " if self.server_info else ""
        self.status_label.setText(f"{connected}Added “{added.get('name')}” to its style library.")

    # -- estimate
    def schedule_estimate(self):
        self._estimate_timer.start(ESTIMATE_DELAY_MS)

    def request_estimate(self):
        """Ask the server how long a run with the current values would take (in the background)."""
        self._estimate_seq += 1
        seq = self._estimate_seq
        if self.server_info is None:
            self.estimate_label.setText("Test the connection to see how long this will take.")
            return
        try:
            rect, _selection = transfer.region(self.target_doc, self.target_node)
            params, client = self.params(), self.client(timeout=10)
        except Exception:  # noqa: BLE001 - the target line already says why nothing can be painted
            self.estimate_label.setText("")
            return
        thread = CallThread(lambda: estimate(client, rect.width, rect.height, params), self)
        thread.done.connect(lambda ok, value: self._estimated(seq, ok, value))
        self._spawn(thread)

    def _estimated(self, seq, ok, value):
        if seq != self._estimate_seq:
            return  # the values changed since this was asked
        self.estimate_label.setText(value if ok else estimate_failed(value))

    # -- run
    def start(self):
        if self.job is not None:
            return
        self.refresh_target()
        doc, node = self.target_doc, self.target_node
        try:
            params = self.params()
            client = self.client()
            source = transfer.prepare(doc, node, self.codec)
            if self.regions_panel.active():  # a style per region; one layer all the same
                chosen = self.regions_panel.regions(source)
                regions = region_form(chosen, source.rect.width, source.rect.height, self.codec.load_style)
                style_png, style_id, label = None, None, regions_label(chosen)
            else:
                style = self.chosen_style()
                style_png = self.codec.load_style(style.path) if style.path is not None else None
                style_id, label, regions = style.style_id, style.label, []
        except Exception as exc:  # noqa: BLE001
            self.save_settings()  # what the painter chose is remembered, even when it cannot run
            self._finish(False, error_message(exc))
            return
        if not self.keep_seed.isChecked():  # a new variation each Apply, shown before it runs
            self.seed_spin.setValue(new_seed())
            params = self.params()
        self.save_settings()
        self.source = source
        self.pending = label
        self.progress_bar.setValue(0)
        self._clear_preview("Waiting for the first preview…")
        self.loss_curve.clear()
        self.progress_label.setText("Sending the layer to the server…")
        self.run_button.setEnabled(False)
        self.cancel_button.setText("Cancel")
        self.job = JobThread(source, client, style_png, style_id, params, self, regions)
        self.job.progress.connect(self._progress)
        self.job.losses.connect(self.loss_curve.add)
        self.job.done.connect(self._job_done)
        self._spawn(self.job)

    def chosen_style(self) -> RegionStyle:
        """The style the chooser shows: the library's selected style, or the image file (checked when loaded)."""
        if self.library_radio.isChecked():
            item = self.library.currentItem()
            if item is None:
                raise PluginError("Pick a style in the server library (press Test connection to load it).")
            return RegionStyle(style_id=item.data(Qt.UserRole), name=item.text())
        return RegionStyle(path=check_style_file(self.style_edit.text()))

    def _progress(self, status, preview):
        fraction = progress_fraction(status)
        if fraction is not None:
            self.progress_bar.setValue(int(fraction * 1000))
        self.progress_label.setText(progress_text(status))
        if preview:
            image = QImage.fromData(bytes(preview))
            if not image.isNull():
                pixmap = QPixmap.fromImage(image).scaled(
                    self.preview_label.size(), Qt.KeepAspectRatio, Qt.SmoothTransformation
                )
                self.preview_label.setPixmap(pixmap)

    def _job_done(self, ok, value):
        source, label = self.source, self.pending
        assert source is not None and label is not None  # start() sets both before the job runs
        self.job = self.source = self.pending = None
        self.run_button.setEnabled(True)
        self.cancel_button.setText("Close")
        if not ok:
            self.progress_label.setText("")
            self.progress_bar.setValue(0)
            self._clear_preview(PREVIEW_HINT)
            message = error_message(value)
            if {cls.__name__ for cls in type(value).__mro__} & set(CONNECTION_ERRORS):
                self.server_info = None
                self.status_label.setText("Not connected: " + message)
            self.request_estimate()  # the queue and the server's speed have changed, or it is gone
            self._finish(False, message)
            return
        # Inserting lets Qt run its events, and Krita may make the new layer active meanwhile: the target watch waits
        # until `created` names that layer, or it would follow Krita onto the result.
        self._watch.stop()
        try:
            added = transfer.insert_result(source, value, label, self.codec, self.ops)
        except Exception as exc:  # noqa: BLE001
            self._watch.start()
            self._finish(False, error_message(exc))
            return
        name = added.name
        self.created = transfer.node_key(added.node)  # Krita may activate it: the next run still paints the original
        self._watch.start()
        if self.server_info is None:
            self.status_label.setText(f"Connected to the stylelayer server at {self.client().base_url}.")
            self.check_connection(quiet=True)  # its answer asks for a new estimate
        else:
            self.request_estimate()  # the server has timed one more job
        self.progress_bar.setValue(1000)
        self.progress_label.setText(f"Added the layer “{name}”.")
        self._finish(True, name)

    def _finish(self, ok, message):
        self.show_message(ok, message)
        self.finished_run.emit(ok, message)

    def cancel_or_close(self):
        if self.job is not None:
            self.job.cancel()
            self.progress_label.setText("Cancelling…")
        else:
            self.close()

    def _use_managed_server(self, url, token):
        """The managed server runs: connect to it as to any server (its token stays out of kritarc's URL field)."""
        self.url_edit.setText(url)
        self.token_edit.setText(token)
        self._server_changed()
        self.check_connection()

    def _managed_mode(self, managed):
        """Local (managed): the panel fills in the address and token; Remote URL: the painter types them."""
        self.url_edit.setReadOnly(managed)
        self.token_edit.setReadOnly(managed)

    def showEvent(self, event):
        super().showEvent(event)
        self.managed_panel.start_if_installed()
        if self.server_info is None and self.test_button.isEnabled():
            self.check_connection(quiet=True)  # connected at once when the server is there

    def closeEvent(self, event):
        if self.job is not None:
            self.job.cancel()
        super().closeEvent(event)


def _int(text, default):
    try:
        return int(text)
    except (TypeError, ValueError):
        return default


def _float(text, default):
    try:
        return float(text)
    except (TypeError, ValueError):
        return default
