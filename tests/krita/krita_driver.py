"""Runs INSIDE a real Krita (exec'd by the test-only `stylelayer_e2e` plug-in once the main window exists).

Reads the job from $STYLELAYER_KRITA_CONFIG (JSON), opens the image, runs the stylelayer plug-in either through
its entry function (`mode: "function"`) or through the real dialog and its QThread worker (`mode: "dialog"`,
opened by triggering the "Style Transfer…" action), then saves the document as .kra with batch mode on and
writes what the test checks from outside into `out_dir`. Always ends with os._exit: Krita's own exit code
says nothing.
"""

import faulthandler
import hashlib
import json
import os
import time
import traceback

from krita import Krita, Selection
from PyQt5.QtCore import QEventLoop, QTimer

CONFIG = json.load(open(os.environ["STYLELAYER_KRITA_CONFIG"], encoding="utf-8"))  # noqa: SIM115
OUT = CONFIG["out_dir"]
# where each thread was, should Krita hang: written shortly before the test's timeout kills it
STACKS = open(os.path.join(OUT, "stacks.txt"), "w")  # noqa: SIM115 - open for as long as Krita runs
faulthandler.dump_traceback_later(max(5, CONFIG.get("stacks_after_s", 80)), exit=False, file=STACKS)
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


def settle(ms):
    loop = QEventLoop()
    QTimer.singleShot(ms, loop.quit)
    loop.exec_()


def wait_until(condition, timeout_s):
    end = time.time() + timeout_s
    while not condition() and time.time() < end:
        settle(50)
    return condition()


def screenshot(dialog, name):
    """The X screen (Xvfb) cropped to the dialog, as the painter sees it: for docs/screenshots."""
    import subprocess

    folder = CONFIG.get("screenshot_dir")
    if not folder:
        return
    settle(300)
    geometry = dialog.frameGeometry()
    crop = f"{geometry.width()}x{geometry.height()}+{geometry.x()}+{geometry.y()}"
    subprocess.run(["import", "-window", "root", "-crop", crop, os.path.join(folder, name)], check=False)


def grab(dialog, name):
    """The dialog as Qt paints it (no X tools needed), into CONFIG's grab_dir when one is set."""
    folder = CONFIG.get("grab_dir")
    if folder:
        dialog.grab().save(os.path.join(folder, name))


def ellipse_selection(doc, x, y, w, h):
    """A hard-edged elliptical selection inscribed in (x, y, w, h), as Krita's ellipse tool makes one."""
    cx, cy, rx, ry = x + w / 2, y + h / 2, w / 2, h / 2
    width, height = doc.width(), doc.height()
    mask = bytes(
        255 if ((i + 0.5 - cx) / rx) ** 2 + ((j + 0.5 - cy) / ry) ** 2 <= 1 else 0
        for j in range(height)
        for i in range(width)
    )
    sel = Selection()
    sel.select(0, 0, width, height, 0)
    sel.setPixelData(mask, 0, 0, width, height)
    write("selection.mask", mask)
    return sel


def run_dialog(doc, node, captured):
    from stylelayer_krita import extension, transfer

    real_insert = transfer.insert_result

    def capture(source, png, label, codec=None, ops=None):
        captured["png"] = png
        captured.setdefault("pngs", []).append(png)
        captured.setdefault("sources", []).append(source.node.name())
        return real_insert(source, png, label, codec, ops)

    transfer.insert_result = capture
    app = Krita.instance()
    action = app.action(extension.ACTION_ID)
    result["action_text"] = action.text() if action is not None else None
    action.trigger()  # what Tools > Scripts > Style Transfer… does
    dialog = extension.extension().dialog
    messages = []
    dialog.show_message = lambda ok, message: messages.append([ok, message])
    # what a first open says before any input: the quiet check of the saved address (nothing listens there)
    wait_until(lambda: dialog.test_button.isEnabled(), 10)
    settle(200)
    on_open = [dialog.status_label.text(), dialog.estimate_label.text()]
    token_placeholder = dialog.token_edit.placeholderText()
    placeholder_fits = (
        dialog.token_edit.fontMetrics().horizontalAdvance(token_placeholder) <= dialog.token_edit.contentsRect().width()
    )
    if CONFIG.get("managed"):  # Server: Local (managed), Install, until the state line says Running
        install_managed(dialog)
    else:
        dialog.url_edit.setText(CONFIG["server_url"])
        if not CONFIG.get("stored_token"):  # else the token the dialog loaded (kritarc, as before)
            dialog.token_edit.setText(CONFIG.get("token", ""))
    dialog.style_edit.setText(CONFIG["style"])
    dialog.file_radio.setChecked(True)
    dialog.set_preset("preview")
    texts = result["texts"] = {"preset_after_set": dialog.preset_combo.currentText(), "on_open": on_open}
    texts["token_placeholder"] = [token_placeholder, placeholder_fits]
    if CONFIG.get("test_connection"):  # the "Test connection" button, then the estimate it leads to
        dialog.check_connection()
        wait_until(lambda: dialog.test_button.isEnabled(), 20)
        texts["status"] = dialog.status_label.text()
    params = CONFIG["params"]
    dialog.iterations_spin.setValue(params["iterations"])
    dialog.size_spin.setValue(params["size"])
    dialog.strength_spin.setValue(1.0)
    dialog.preserve_check.setChecked(False)
    texts["preset_custom"] = dialog.preset_combo.currentText()
    texts["strength_slider"] = [dialog.strength_slider.value(), dialog.strength_slider.maximum()]
    if CONFIG.get("test_connection"):
        dialog.refresh_target()
        dialog.request_estimate()
        wait_until(lambda: dialog.estimate_label.text().startswith(("Estimated", "No estimate", "Too large")), 20)
        texts["estimate"] = dialog.estimate_label.text()
    if CONFIG.get("add_to_library"):  # the style file into the server's library, then picked from there
        dialog.add_to_library()
        wait_until(lambda: dialog.add_button.isEnabled(), 30)
        item = dialog.library.currentItem()
        texts["library"] = [
            dialog.library.count(),
            item.text() if item else None,
            dialog.library_radio.isChecked(),
            dialog.library.isVisibleTo(dialog),
            dialog.library_hint.isVisibleTo(dialog),
        ]
        texts["status_added"] = dialog.status_label.text()
    texts["target"] = dialog.target_label.text()
    screenshot(dialog, "krita-dialog.png")
    if CONFIG.get("run_params"):  # other values for the run itself (a screenshot shows a preset, the run is short)
        dialog.iterations_spin.setValue(CONFIG["run_params"]["iterations"])
        dialog.size_spin.setValue(CONFIG["run_params"]["size"])
    if CONFIG.get("missing_style"):  # a style file that is not there: the same words as in GIMP
        dialog.style_edit.setText(CONFIG["missing_style"])
        texts["missing_style"] = run_once(dialog, messages)[0].get("message")
        dialog.style_edit.setText(CONFIG["style"])
    if CONFIG.get("attempts"):  # one Apply per (url, token): what the painter reads for each failure
        texts["attempts"] = []
        for url, token in CONFIG["attempts"]:
            dialog.url_edit.setText(url)
            dialog.token_edit.setText(token)
            done = run_once(dialog, messages)[0]
            texts["attempts"].append([done.get("ok"), done.get("message"), dialog.status_label.text()])
        result["dialog"] = {"messages": messages}
        raise RuntimeError("attempts only")
    if CONFIG.get("regions"):  # Regions: the layer's selection masks, each given its style through the dialog
        choose_regions(dialog, texts)
    estimate_before = dialog.estimate_label.text()
    shown = texts["estimates_shown"] = []
    real_estimated = dialog._estimated

    def estimated(seq, ok, value):  # every answer the label gets, in order (for the test's messages)
        real_estimated(seq, ok, value)
        shown.append([seq, dialog._estimate_seq, dialog.estimate_label.text()])

    dialog._estimated = estimated
    finished = [run_once(dialog, messages)]
    texts["seeds"] = [dialog.seed_spin.value()]
    for run in range(1, CONFIG.get("runs", 1)):  # Apply again, as a painter would, with Krita's active layer as it is
        settle(300)
        if run == CONFIG.get("keep_from_run"):  # the Keep box: this run paints the last one's variation again
            dialog.keep_seed.setChecked(True)
        texts.setdefault("targets", []).append(dialog.target_label.text())
        finished.append(run_once(dialog, messages))
        texts["seeds"].append(dialog.seed_spin.value())
    texts["status_after"] = dialog.status_label.text()
    if CONFIG.get("estimate_flow"):  # the estimate after the run(s), then with a job of another client ahead
        asked = dialog._estimate_seq  # the estimate the end of the run asked for (one during it saw the run ahead)
        wait_until(lambda: any(seq >= asked for seq, _, _ in shown), 20)
        texts["estimate_before_run"] = estimate_before
        texts["estimate_after_run"] = dialog.estimate_label.text()
        texts["run_s"] = round(finished[0][3], 2)
        from stylelayer_krita import transfer as tr

        other = dialog.client()
        source = tr.prepare(doc, node, dialog.codec)
        job = other.submit(source.content_png, dialog.codec.load_style(CONFIG["style"]), params={"iterations": 5000})
        wait_until(lambda: other.status(job)["state"] == "running", 20)
        dialog.request_estimate()
        asked = dialog._estimate_seq
        wait_until(lambda: any(seq >= asked for seq, _, _ in shown), 20)
        texts["estimate_with_job_ahead"] = dialog.estimate_label.text()
        other.cancel(job)
    texts["estimate_after"] = dialog.estimate_label.text()
    texts["progress"] = sorted(set(dialog_progress))
    curve = dialog.loss_curve.grab().toImage()  # the live loss curve as painted: more than frame and background
    colours = {curve.pixel(x, y) for x in range(curve.width()) for y in range(curve.height())}
    done = finished[-1][0]
    result["dialog"] = {
        "done": done,
        "messages": messages,
        "gui_ticks": sum(f[1] for f in finished),
        "max_progress": max(f[2] for f in finished),
        "saved_url": app.readSetting("stylelayer", "server_url", ""),
        "loss_points": len(dialog.loss_curve.totals),
        "curve_colours": len(colours),
    }
    result["sources"] = captured.get("sources", [])
    if not done.get("ok"):
        raise RuntimeError(done.get("message", "the dialog did not finish in time"))
    return done["message"]


dialog_progress = []


def add_region_masks(doc, node):
    """One selection mask (a local selection) on `node` per region of CONFIG: (name, [x, y, w, h], style)."""
    for name, (x, y, w, h), _style in CONFIG["regions"]:
        sel = Selection()
        sel.select(x, y, w, h, 255)
        mask = doc.createSelectionMask(name)
        mask.setSelection(sel)
        node.addChildNode(mask, None)
    doc.waitForDone()
    settle(200)


def add_region_group(doc, node):
    """A hidden group "Regions" above `node` with one paint layer per region of CONFIG, opaque over its rect."""
    group = doc.createGroupLayer("Regions")
    doc.rootNode().addChildNode(group, node)
    for name, (x, y, w, h), _style in CONFIG["regions"]:
        layer = doc.createNode(name, "paintlayer")
        group.addChildNode(layer, None)
        layer.setPixelData(bytes([40, 80, 200, 255]) * (w * h), x, y, w, h)
    group.setVisible(False)
    doc.setActiveNode(node)  # the photo, as the painter picks it again after painting the regions
    doc.waitForDone()
    settle(300)


def choose_regions(dialog, texts):
    """Regions from the layer's selection masks (or CONFIG's regions_from: "group", the layers of group Regions);
    for each, its style file in the chooser, then "Use the style above for this region", as a painter does. The
    region list as shown goes into texts["regions"]."""
    from stylelayer_krita import regions_ui

    panel = dialog.regions_panel
    dialog.refresh_target()
    if CONFIG.get("regions_from") == "group":
        panel.source_combo.setCurrentIndex(panel.source_combo.findText("The layers of group “Regions”"))
    else:
        panel.source_combo.setCurrentIndex(panel.source_combo.findData(regions_ui.MASKS))
    for row, (_name, _rect, style) in enumerate(CONFIG["regions"]):
        panel.region_list.setCurrentRow(row)
        dialog.file_radio.setChecked(True)
        dialog.style_edit.setText(style)
        panel.use_button.click()
    texts["regions"] = [panel.region_list.item(i).text() for i in range(panel.region_list.count())]


def install_managed(dialog):
    panel = dialog.managed_panel
    panel.managed_radio.setChecked(True)
    states = result["managed_states"] = [panel.state_text()]
    panel.action("Install")

    shots = {"installing": False}

    def seen():
        text = panel.state_text()
        if text != states[-1]:
            states.append(text)
        if not shots["installing"] and "MB" in text:  # the state line with a download's percent and MB
            shots["installing"] = True
            grab(dialog, "krita-managed-installing.png")
        return text.startswith(("Running", "Failed"))

    wait_until(seen, CONFIG["install_timeout_s"])
    wait_until(lambda: dialog.url_edit.text() == panel.managed_url() and dialog.server_info is not None, 30)
    grab(dialog, "krita-managed-running.png")
    result["managed"] = {
        "state": panel.state_text(),
        "pid": panel.server_state.pid if panel.server_state is not None else None,
        "url": panel.managed_url(),
        "status_line": dialog.status_label.text(),
        "folder": str(panel.inst.folder),
    }


def run_once(dialog, messages):
    """Press Apply and wait for the run to end: (done, GUI ticks during it, highest progress bar value, seconds)."""
    loop = QEventLoop()
    ticks = {"n": 0, "progress_values": []}

    def tick():  # the GUI thread keeps running while the job is in flight: proof Krita does not freeze
        ticks["n"] += 1
        ticks["progress_values"].append(dialog.progress_bar.value())

    timer = QTimer()
    timer.timeout.connect(tick)
    timer.start(50)
    done = {}

    def finished(ok, message):
        done.update(ok=ok, message=message)
        loop.quit()

    dialog.finished_run.connect(finished)
    QTimer.singleShot(int(CONFIG.get("dialog_timeout_s", 40) * 1000), loop.quit)
    started = time.time()
    dialog.start()
    if dialog.job is not None:
        dialog.job.progress.connect(lambda status, preview: dialog_progress.append(dialog.progress_label.text()))
        shot = {"taken": False}

        def running_shot(status, preview):  # once the last level runs and a preview shows
            if (
                not shot["taken"]
                and status.get("levels", 1) > 1
                and status.get("level") == status.get("levels")
                and dialog.preview_label.pixmap() is not None
                and not dialog.preview_label.pixmap().isNull()
            ):
                shot["taken"] = True
                screenshot(dialog, "krita-dialog-running.png")

        dialog.job.progress.connect(running_shot)
    if CONFIG.get("cancel_on_progress") and dialog.job is not None:
        dialog.job.progress.connect(lambda status, preview: dialog.cancel_or_close())  # the Cancel button
    if "ok" not in done:
        loop.exec_()
    timer.stop()
    dialog.finished_run.disconnect(finished)
    return done, ticks["n"], max(ticks["progress_values"] or [0]), time.time() - started


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
    if CONFIG.get("ellipse"):
        doc.setSelection(ellipse_selection(doc, *CONFIG["ellipse"]))
    if CONFIG.get("regions"):
        (add_region_group if CONFIG.get("regions_from") == "group" else add_region_masks)(doc, node)
    stack_before = [n.name() for n in doc.rootNode().childNodes()]
    captured = {}
    try:
        if CONFIG["mode"] == "dialog":
            name = run_dialog(doc, node, captured)
        else:
            from stylelayer_krita import transfer
            from stylelayer_krita.krita_ops import KritaLayerOps

            progress = []
            res = transfer.run_style_transfer(  # with its default codec: Krita's QImage one
                doc,
                node,
                CONFIG["style"],
                CONFIG["params"],
                CONFIG["server_url"],
                on_progress=lambda status, preview: progress.append(status.get("iteration")),
                ops=KritaLayerOps(),
            )
            captured["png"], name = res.result_png, res.name
            result["progress_calls"] = len(progress)
        result["ok"] = True
        result["layer_name"] = name
    except Exception as exc:  # noqa: BLE001 - recorded for the test
        from stylelayer_messages import error_message

        result["error_type"] = type(exc).__name__
        result["error_message"] = error_message(exc)
        result["traceback"] = traceback.format_exc()
    result["stage"] = "ran"
    settle(300)  # setActiveNode reaches the view through queued events
    if "png" in captured:
        write("server_result.png", captured["png"])
        for i, png in enumerate(captured.get("pngs", [])):
            write(f"server_result_{i}.png", png)
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
            write("new_canvas.bgra", bytes(n.pixelData(0, 0, w, h)))
            write("new_projection.bgra", bytes(n.projectionPixelData(0, 0, w, h)))
            result["new_children"] = [[c.name(), c.type()] for c in n.childNodes()]
            for c in n.childNodes():
                if c.type() == "transparencymask":
                    write("new_mask.a8", bytes(c.pixelData(0, 0, w, h)))
        if n.name() == result["original"]["name"]:
            result["original_children"] = [[c.name(), c.type()] for c in n.childNodes()]
    result["size"] = [w, h]
    if CONFIG.get("undo"):  # Edit > Undo, as often as asked: the stack after each
        result["after_undo"] = []
        for _ in range(CONFIG["undo"]):
            app.action("edit_undo").trigger()
            doc.waitForDone()
            settle(300)
            result["after_undo"].append(
                [
                    [n.name(), [c.type() for c in n.childNodes()]]
                    for n in doc.rootNode().childNodes()
                    if n.type() != "selectionmask"
                ]
            )
    app.setBatchmode(True)
    doc.setBatchmode(True)
    result["saved"] = bool(doc.saveAs(os.path.join(OUT, "doc.kra")))
    result["elapsed_s"] = round(time.time() - t0, 2)
    if CONFIG.get("quit"):  # File > Quit, as a painter ends Krita: the test then looks for leftover processes
        with open(os.path.join(OUT, "result.json"), "w", encoding="utf-8") as fh:
            json.dump(result, fh, indent=1)
        QTimer.singleShot(60000, lambda: (result.update(quit_timeout=True), finish(4)))  # Krita did not quit
        doc.close()
        app.action("file_quit").trigger()
        return
    finish(0)


try:
    main()
except BaseException:  # noqa: BLE001
    result["crash"] = traceback.format_exc()
    finish(3)
