"""Test-only Krita plug-in: once the main window exists, exec the driver script named by
$STYLELAYER_KRITA_DRIVER. The driver writes its own result file and ends Krita with os._exit."""

import os
import traceback

from krita import Krita
from PyQt5.QtCore import QTimer


def _run_driver():
    path = os.environ.get("STYLELAYER_KRITA_DRIVER")
    if not path:
        return
    try:
        with open(path, encoding="utf-8") as fh:
            code = compile(fh.read(), path, "exec")
        exec(code, {"__name__": "__stylelayer_driver__", "__file__": path})
    except BaseException:  # noqa: BLE001 - any crash of the driven script is written out for the test
        out = os.environ.get("STYLELAYER_KRITA_RESULT", "")
        if out:
            with open(out + ".crash.txt", "w", encoding="utf-8") as fh:
                fh.write(traceback.format_exc())
        os._exit(3)


def _on_window():
    QTimer.singleShot(0, _run_driver)


Krita.instance().notifier().windowCreated.connect(_on_window)
