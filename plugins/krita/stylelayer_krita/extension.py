"""Krita glue: the extension and its "Style Transfer…" action under Tools > Scripts."""

from krita import Extension, Krita

ACTION_ID = "stylelayer_style_transfer"


class StylelayerExtension(Extension):
    def __init__(self, parent):
        super().__init__(parent)
        self.dialog = None

    def setup(self):
        notifier = Krita.instance().notifier()
        notifier.setActive(True)
        notifier.applicationClosing.connect(self.stop_server)

    def stop_server(self):
        """Krita quits: its managed server stops too (it would stop when idle, but not leave a process behind)."""
        from .managed_ui import stop_managed_server

        stop_managed_server()

    def createActions(self, window):
        action = window.createAction(ACTION_ID, "Style Transfer…", "tools/scripts")
        action.triggered.connect(self.show_dialog)

    def show_dialog(self):
        """One dialog for the session (it owns the worker threads, so it must outlive them)."""
        if self.dialog is None:
            from .ui import StyleTransferDialog

            window = Krita.instance().activeWindow()
            self.dialog = StyleTransferDialog(window.qwindow() if window is not None else None)
        self.dialog.show()
        self.dialog.raise_()
        self.dialog.activateWindow()
        return self.dialog


_extension = None


def register():
    global _extension
    _extension = StylelayerExtension(Krita.instance())
    Krita.instance().addExtension(_extension)


def extension():
    """The registered extension (the e2e driver uses it to open the dialog the way the action does)."""
    return _extension
