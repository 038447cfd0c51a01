"""Runs INSIDE a real Krita (exec'd by the test-only `stylelayer_e2e` plug-in once the main window exists).

Reads the job from $STYLELAYER_KRITA_CONFIG (JSON), opens the image, runs the stylelayer plug-in either through
its entry function (`mode: "function"`) or through the real dialog and its QThread worker (`mode: "dialog"`,
opened by triggering the "Style Transfer…" action), then saves the document as .kra with batch mode on and
writes what the test checks from outside into `out_dir`. Always ends with os._exit: Krita's own exit code
says nothing.
"""

import hashlib
import json
import os
import time
import traceback

from krita import Krita, Selection
from PyQt5.QtCore import QEventLoop, QTimer

CONFIG = json.load(open(os.environ["STYLELAYER_KRITA_CONFIG"], encoding="utf-8"))  # noqa: SIM115
OUT = CONFIG["out_dir"]
result = {"ok": False, "stage": "start"}


def write(name, data):
    with open(os.path.join(OUT, name), "wb") as fh:
        fh.write(data)


def rect_of(node):
    r = node.bounds()
    return [r.x(), r.y(), r.width(), r.height()]


def finish(code=0):
    with open(os.path.join(OUT, "result.json"), "w", encoding="utf-8") as fh:
        json.dump(result, fh, indent=1)
    os._exit(code)


def run_dialog(doc, node, captured):
    from stylelayer_krita import extension, transfer

    real_insert = transfer.insert_result

    def capture(source, png, name, codec=None):
        captured["png"] = png
        return real_insert(source, png, name, codec)

    transfer.insert_result = capture
    app = Krita.instance()
    action = app.action(extension.ACTION_ID)
    result["action_text"] = action.text() if action is not None else None
    action.trigger()  # what Tools > Scripts > Style Transfer… does
    dialog = extension.extension().dialog
    messages = []
    dialog.show_message = lambda ok, message: messages.append([ok, message])
    dialog.url_edit.setText(CONFIG["server_url"])
    dialog.style_edit.setText(CONFIG["style"])
    dialog.file_radio.setChecked(True)
    dialog.preset_combo.setCurrentText("preview")
    params = CONFIG["params"]
    dialog.iterations_spin.setValue(params["iterations"])
    dialog.size_spin.setValue(params["size"])
    dialog.strength_spin.setValue(1.0)
    dialog.preserve_check.setChecked(False)
    loop = QEventLoop()
    ticks = {"n": 0, "progress_values": []}

    def tick():  # the GUI thread keeps running while the job is in flight: proof Krita does not freeze
        ticks["n"] += 1
        ticks["progress_values"].append(dialog.progress_bar.value())

    timer = QTimer()
    timer.timeout.connect(tick)
    timer.start(50)
    done = {}
    dialog.finished_run.connect(lambda ok, message: (done.update(ok=ok, message=message), loop.quit()))
    QTimer.singleShot(int(CONFIG.get("dialog_timeout_s", 40) * 1000), loop.quit)
    dialog.start()
    if CONFIG.get("cancel_on_progress") and dialog.job is not None:
        dialog.job.progress.connect(lambda status, preview: dialog.cancel_or_close())  # the Cancel button
    if "ok" not in done:
        loop.exec_()
    timer.stop()
    curve = dialog.loss_curve.grab().toImage()  # the live loss curve as painted: more than frame and background
    colours = {curve.pixel(x, y) for x in range(curve.width()) for y in range(curve.height())}
    result["dialog"] = {"done": done, "messages": messages, "gui_ticks": ticks["n"],
                        "max_progress": max(ticks["progress_values"] or [0]),
                        "saved_url": app.readSetting("stylelayer", "server_url", ""),
                        "loss_points": len(dialog.loss_curve.totals), "curve_colours": len(colours)}  # fmt: skip
    if not done.get("ok"):
        raise RuntimeError(done.get("message", "the dialog did not finish in time"))
    return done["message"]


def main():
    t0 = time.time()
    app = Krita.instance()
    doc = app.openDocument(CONFIG["image"])
    app.activeWindow().addView(doc)
    node = doc.activeNode()
    result["stage"] = "opened"
    result["original"] = {"name": node.name(), "bounds": rect_of(node)}
    w, h = doc.width(), doc.height()
    before = bytes(node.pixelData(0, 0, w, h))
    write("orig_before.bgra", before)
    if CONFIG.get("selection"):
        x, y, sw, sh, value = CONFIG["selection"]
        sel = Selection()
        sel.select(x, y, sw, sh, value)
        doc.setSelection(sel)
    stack_before = [n.name() for n in doc.rootNode().childNodes()]
    captured = {}
    try:
        if CONFIG["mode"] == "dialog":
            name = run_dialog(doc, node, captured)
        else:
            from stylelayer_krita import transfer

            progress = []
            res = transfer.run_style_transfer(  # with its default codec: Krita's QImage one
                doc, node, CONFIG["style"], CONFIG["params"], CONFIG["server_url"],
                on_progress=lambda status, preview: progress.append(status.get("iteration")),
            )  # fmt: skip
            captured["png"], name = res.result_png, res.name
            result["progress_calls"] = len(progress)
        result["ok"] = True
        result["layer_name"] = name
    except Exception as exc:  # noqa: BLE001 - recorded for the test
        from stylelayer_krita.logic import error_message

        result["error_type"] = type(exc).__name__
        result["error_message"] = error_message(exc)
        result["traceback"] = traceback.format_exc()
    result["stage"] = "ran"
    settle = QEventLoop()  # setActiveNode reaches the view through queued events
    QTimer.singleShot(300, settle.quit)
    settle.exec_()
    if "png" in captured:
        write("server_result.png", captured["png"])
    stack = doc.rootNode().childNodes()
    result["stack_before"] = stack_before
    result["stack"] = [[n.name(), n.type(), rect_of(n)] for n in stack]
    after = bytes(node.pixelData(0, 0, w, h))
    write("orig_after.bgra", after)
    result["original_unchanged"] = after == before
    result["original_sha"] = [hashlib.sha256(before).hexdigest(), hashlib.sha256(after).hexdigest()]
    active = doc.activeNode()
    result["active"] = active.name() if active is not None else None
    for i, n in enumerate(stack):
        if n.name() == result.get("layer_name"):
            result["new_index"] = i
            x, y, nw, nh = rect_of(n)
            write("new_layer.bgra", bytes(n.pixelData(x, y, nw, nh)))
    result["size"] = [w, h]
    app.setBatchmode(True)
    doc.setBatchmode(True)
    result["saved"] = bool(doc.saveAs(os.path.join(OUT, "doc.kra")))
    result["elapsed_s"] = round(time.time() - t0, 2)
    finish(0)


try:
    main()
except BaseException:  # noqa: BLE001
    result["crash"] = traceback.format_exc()
    finish(3)
