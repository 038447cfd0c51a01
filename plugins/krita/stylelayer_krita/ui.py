"""PyQt5 side of the plug-in: worker threads and the "Style Transfer" dialog.

Krita objects are only touched on the GUI thread (`transfer.prepare` / `transfer.insert_result`); the HTTP
job runs in a QThread that reports progress and previews through signals, so Krita keeps painting.
"""

from krita import Krita
from PyQt5.QtCore import QPointF, QSize, Qt, QThread, pyqtSignal
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
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from . import logic, transfer
from .logic import PluginError
from .qtcodec import QtCodec

SETTINGS_GROUP = "stylelayer"
PREVIEW_SIDE = 256
PREVIEW_HINT = "A live preview appears here while the style is applied."


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

    def __init__(self, source, client, style_png, style_id, params, parent=None):
        super().__init__(parent)
        self._args = (source, client, style_png, style_id, params)
        self._cancel = False

    def cancel(self):
        self._cancel = True

    def run(self):
        source, client, style_png, style_id, params = self._args
        try:
            png = transfer.request(
                source, client, style_png, style_id, params,
                on_progress=lambda status, preview: self.progress.emit(status, preview),
                should_cancel=lambda: self._cancel,
                on_losses=self.losses.emit,
            )  # fmt: skip
        except BaseException as exc:  # noqa: BLE001
            self.done.emit(False, exc)
            return
        self.done.emit(True, png)


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

    def paintEvent(self, _event):  # noqa: N802 - Qt's name
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
    """Non-modal: Krita stays usable while a job runs. `finished_run(ok, message)` after each run."""

    finished_run = pyqtSignal(bool, str)

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setWindowTitle("Style Transfer")
        self.codec = QtCodec()
        self.job = None
        self.source = None
        self.pending = None  # (layer name)
        self._threads = set()
        self.show_message = self._message_box  # tests replace this to record instead of blocking
        self._build()
        self._load_settings()

    # -- layout
    def _build(self):
        layout = QVBoxLayout(self)

        server = QGroupBox("Server")
        server_layout = QVBoxLayout(server)
        row = QHBoxLayout()
        self.url_edit = QLineEdit()
        self.url_edit.setPlaceholderText(logic.DEFAULT_SERVER_URL)
        self.url_edit.setToolTip("Address of the stylelayer server (start it with `stylelayer serve`).")
        self.url_edit.setMinimumWidth(self.url_edit.fontMetrics().horizontalAdvance("https://127.0.0.1:87650") + 16)
        self.connect_button = QPushButton("Connect")
        self.connect_button.setToolTip("Check the server and load its style library.")
        self.connect_button.clicked.connect(self.check_connection)
        row.addWidget(self.url_edit, 1)
        row.addWidget(self.connect_button)
        server_layout.addLayout(row)
        self.status_label = QLabel("Not connected: press Connect to check the server and load its styles.")
        self.status_label.setWordWrap(True)
        server_layout.addWidget(self.status_label)
        layout.addWidget(server)

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
        file_row.addWidget(self.file_radio)
        file_row.addWidget(self.style_edit, 1)
        file_row.addWidget(browse)
        style_layout.addLayout(file_row)
        style_layout.addWidget(self.library_radio)
        self.library = QListWidget()
        self.library.setViewMode(QListWidget.IconMode)
        self.library.setIconSize(QSize(96, 96))
        self.library.setGridSize(QSize(112, 124))  # room for the name under the thumbnail
        self.library.setWordWrap(True)
        self.library.setMovement(QListWidget.Static)
        self.library.setResizeMode(QListWidget.Adjust)
        self.library.setFixedHeight(124 + 2 * self.library.frameWidth() + 8)  # one full row, then it scrolls
        self.library.setToolTip("Styles stored on the server (press Connect to load them).")
        self.library.itemSelectionChanged.connect(lambda: self.library_radio.setChecked(True))
        style_layout.addWidget(self.library)
        layout.addWidget(style)

        middle = QHBoxLayout()
        options = QGroupBox("Options")
        form = QFormLayout(options)
        self.preset_combo = QComboBox()
        self.preset_combo.addItems(list(logic.PRESETS))
        self.preset_combo.setToolTip(
            "Fills in working size and iterations: preview (256 px, 60) is a quick look, "
            "normal (512 px, 200) a good result, high (1024 px, 500) fine detail but slow."
        )
        self.preset_combo.currentTextChanged.connect(self.apply_preset)
        self.iterations_spin = QSpinBox()
        self.iterations_spin.setRange(1, logic.MAX_ITERATIONS)
        self.iterations_spin.setSingleStep(10)
        self.iterations_spin.setToolTip(
            "How long the server paints: more iterations take the style further and take longer "
            "(time grows in step with this number)."
        )
        self.strength_spin = QDoubleSpinBox()
        self.strength_spin.setRange(logic.MIN_STRENGTH, logic.MAX_STRENGTH)
        self.strength_spin.setSingleStep(0.1)
        self.strength_spin.setToolTip(
            "How much of the style's brushwork and texture takes over your picture. 1.0 is the usual balance; "
            "2-5 paints over more of it, 0.2-0.5 keeps more of your shapes and detail."
        )
        self.preserve_check = QCheckBox("Keep the layer's own colours")
        self.preserve_check.setToolTip("Take only the style's strokes and texture, not its palette.")
        self.size_spin = QSpinBox()
        self.size_spin.setRange(0, logic.MAX_SIZE)
        self.size_spin.setSingleStep(64)
        self.size_spin.setSpecialValueText("full size")
        self.size_spin.setSuffix(" px")
        self.size_spin.setToolTip(
            "The longest side the server paints at; the result is scaled back to the layer's size. Smaller is "
            "much faster and gives bigger strokes, larger keeps finer detail. 0 (full size) uses the layer as it is."
        )
        form.addRow("Preset", self.preset_combo)
        form.addRow("Iterations", self.iterations_spin)
        form.addRow("Style strength", self.strength_spin)
        form.addRow("Colours", self.preserve_check)
        form.addRow("Working size", self.size_spin)
        middle.addWidget(options, 1)

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
        middle.addWidget(preview)
        layout.addLayout(middle)

        self.progress_bar = QProgressBar()
        self.progress_bar.setRange(0, 1000)
        self.progress_bar.setValue(0)
        self.progress_label = QLabel("")
        self.progress_label.setWordWrap(True)
        self.progress_label.setMinimumHeight(self.progress_label.fontMetrics().height())  # no jump on first text
        layout.addWidget(self.progress_bar)
        layout.addWidget(self.progress_label)

        buttons = QHBoxLayout()
        buttons.addStretch(1)
        self.run_button = QPushButton("Apply style")
        self.run_button.setToolTip("Paint the active layer in the chosen style, as a new layer above it.")
        self.run_button.setDefault(True)
        self.run_button.clicked.connect(self.start)
        self.cancel_button = QPushButton("Close")
        self.cancel_button.clicked.connect(self.cancel_or_close)
        buttons.addWidget(self.run_button)
        buttons.addWidget(self.cancel_button)
        layout.addLayout(buttons)

    def _clear_preview(self, text):
        self.preview_label.clear()
        self.preview_label.setText(text)

    def _load_settings(self):
        self.url_edit.setText(read_setting("server_url", logic.DEFAULT_SERVER_URL))
        self.style_edit.setText(read_setting("style_path", ""))
        preset = read_setting("preset", logic.DEFAULT_PRESET)
        self.preset_combo.setCurrentText(preset if preset in logic.PRESETS else logic.DEFAULT_PRESET)
        self.apply_preset(self.preset_combo.currentText())
        self.iterations_spin.setValue(_int(read_setting("iterations", ""), self.iterations_spin.value()))
        self.size_spin.setValue(_int(read_setting("size", ""), self.size_spin.value()))
        self.strength_spin.setValue(_float(read_setting("strength", "1.0"), 1.0))
        self.preserve_check.setChecked(read_setting("preserve_colors", "false") == "true")

    def save_settings(self):
        write_setting("server_url", self.url_edit.text().strip())
        write_setting("style_path", self.style_edit.text().strip())
        write_setting("preset", self.preset_combo.currentText())
        write_setting("iterations", self.iterations_spin.value())
        write_setting("size", self.size_spin.value())
        write_setting("strength", self.strength_spin.value())
        write_setting("preserve_colors", "true" if self.preserve_check.isChecked() else "false")

    def apply_preset(self, name):
        size, iterations = logic.preset_values(name)
        self.size_spin.setValue(size)
        self.iterations_spin.setValue(iterations)

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

    def client(self):
        return transfer.make_client(self.url_edit.text())

    # -- server
    def check_connection(self):
        try:
            client = self.client()
        except Exception as exc:  # noqa: BLE001
            self.status_label.setText(logic.error_message(exc))
            return
        client.timeout = 5
        self.status_label.setText("Connecting…")
        self.connect_button.setEnabled(False)

        def fetch():
            info = client.info()
            styles = client.styles()
            thumbs = []
            for style in styles[:60]:
                try:
                    thumbs.append(client.style_thumbnail(style["id"]))
                except Exception:  # noqa: BLE001 - a missing thumbnail is not fatal
                    thumbs.append(None)
            return info, styles, thumbs

        thread = CallThread(fetch, self)
        thread.done.connect(self._connected)
        self._spawn(thread)

    def _connected(self, ok, value):
        self.connect_button.setEnabled(True)
        if not ok:
            message = logic.error_message(value)
            self.status_label.setText("Not connected: " + message[:1].lower() + message[1:])
            self.status_label.setToolTip(message)
            self.library.clear()  # the server's styles cannot be used while it is out of reach
            return
        info, styles, thumbs = value
        device = info.get("device", "") if isinstance(info, dict) else ""
        count = f"{len(styles)} style{'' if len(styles) == 1 else 's'} in the library"
        self.status_label.setText(f"Connected{' (' + str(device) + ')' if device else ''}: {count}.")
        self.status_label.setToolTip(str(info))
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
        self.save_settings()

    def browse_style(self):
        path, _ = QFileDialog.getOpenFileName(
            self, "Style image", self.style_edit.text(), "Images (*.png *.jpg *.jpeg *.webp *.bmp *.tif *.tiff)"
        )
        if path:
            self.style_edit.setText(path)
            self.file_radio.setChecked(True)

    # -- run
    def params(self):
        return logic.build_params(
            self.iterations_spin.value(),
            self.strength_spin.value(),
            self.preserve_check.isChecked(),
            self.size_spin.value(),
        )

    def start(self):
        if self.job is not None:
            return
        app = Krita.instance()
        doc = app.activeDocument()
        try:
            params = self.params()
            client = self.client()
            source = transfer.prepare(doc, doc.activeNode() if doc is not None else None, self.codec)
            if self.library_radio.isChecked():
                item = self.library.currentItem()
                if item is None:
                    raise PluginError("Pick a style in the server library (press Connect to load it).")
                style_png, style_id, label = None, item.data(Qt.UserRole), logic.style_label(style_name=item.text())
            else:
                path = self.style_edit.text().strip()
                style_png, style_id, label = self.codec.load_style(path), None, logic.style_label(path)
        except Exception as exc:  # noqa: BLE001
            self._finish(False, logic.error_message(exc))
            return
        self.save_settings()
        self.source = source
        self.pending = label
        self.progress_bar.setValue(0)
        self._clear_preview("Waiting for the first preview…")
        self.loss_curve.clear()
        self.progress_label.setText("Sending the layer to the server…")
        self.run_button.setEnabled(False)
        self.cancel_button.setText("Cancel")
        self.job = JobThread(source, client, style_png, style_id, params, self)
        self.job.progress.connect(self._progress)
        self.job.losses.connect(self.loss_curve.add)
        self.job.done.connect(self._job_done)
        self._spawn(self.job)

    def _progress(self, status, preview):
        fraction = logic.progress_fraction(status)
        if fraction is not None:
            self.progress_bar.setValue(int(fraction * 1000))
        self.progress_label.setText(logic.progress_text(status))
        if preview:
            image = QImage.fromData(bytes(preview))
            if not image.isNull():
                pixmap = QPixmap.fromImage(image).scaled(
                    self.preview_label.size(), Qt.KeepAspectRatio, Qt.SmoothTransformation
                )
                self.preview_label.setPixmap(pixmap)

    def _job_done(self, ok, value):
        source, label = self.source, self.pending
        self.job = self.source = self.pending = None
        self.run_button.setEnabled(True)
        self.cancel_button.setText("Close")
        if not ok:
            self.progress_label.setText("")
            self.progress_bar.setValue(0)
            self._clear_preview(PREVIEW_HINT)
            self._finish(False, logic.error_message(value))
            return
        try:
            name = logic.style_layer_name(label, transfer.sibling_names(source.node))
            transfer.insert_result(source, value, name, self.codec)
        except Exception as exc:  # noqa: BLE001
            self._finish(False, logic.error_message(exc))
            return
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

    def closeEvent(self, event):  # noqa: N802 - Qt's name
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
