"""Krita glue: the extension and its "Style Transfer…" action under Tools > Scripts."""

from krita import Extension, Krita

ACTION_ID = "stylelayer_style_transfer"


class StylelayerExtension(Extension):
    def __init__(self, parent):
        super().__init__(parent)

    def setup(self):
        pass

    def createActions(self, window):
        action = window.createAction(ACTION_ID, "Style Transfer…", "tools/scripts")
        action.triggered.connect(self.show_dialog)

    def show_dialog(self):
        pass


def register():
    Krita.instance().addExtension(StylelayerExtension(Krita.instance()))
