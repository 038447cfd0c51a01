#!/usr/bin/env python3
"""stylelayer for GIMP 3: Filters > Artistic > Neural Style Transfer…

Sends the active layer (or the part of it inside the selection's bounds) and a style image to a stylelayer
server (this machine's, or another's with a token), shows progress while the server works, and inserts the result
as a NEW layer named after the style directly above the source layer, at the same offsets, in one undo group; with
a selection the new layer gets a layer mask of the selection's shape (a hard edge faded in over a few pixels). The
source layer is never written to. Also callable from scripts through the PDB as `plug-in-stylelayer`.

Only the standard library and gi are used; the HTTP client, the pure logic and the dialog live next to this file.
"""

import contextlib
import os
import sys
import tempfile

import gi

gi.require_version("Gimp", "3.0")
gi.require_version("Gegl", "0.4")
from gi.repository import Gegl, Gimp, Gio, GLib, GObject  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import stylelayer_logic as logic  # noqa: E402
import stylelayer_managed_gimp as managed_gimp  # noqa: E402
from stylelayer_image import (  # noqa: E402
    clear_outside,
    encode_png,
    feather_mask,
    is_png,
    open_edges,
    style_label,
)
from stylelayer_messages import PluginError, error_message, sentence  # noqa: E402
from stylelayer_params import (  # noqa: E402
    DEFAULT_SERVER_URL,
    MAX_ITERATIONS,
    MAX_SIZE,
    MAX_STRENGTH,
    MAX_STYLE_SIDE,
    MIN_STRENGTH,
    PRESET_LABELS,
    build_params,
    check_style_file,
    new_seed,
)
from stylelayer_regions import Region, RegionStyle, parse_region_spec, region_form, regions_label  # noqa: E402
from stylelayer_settings import load_token, migrate_token, save_token  # noqa: E402
from stylelayer_workflow import JobRunner, check_result, connect, is_cancelled, placement, run_job  # noqa: E402

PROC_NAME = "plug-in-stylelayer"
PIXEL_FORMAT = "R'G'B'A u8"
MASK_FORMAT = "Y u8"
TITLE = "Neural Style Transfer"


def _rect(x, y, w, h):
    return Gegl.Rectangle.new(x, y, w, h)


def _read_rgba(drawable, x, y, w, h):
    return bytes(drawable.get_buffer().get(_rect(x, y, w, h), 1.0, PIXEL_FORMAT, Gegl.AbyssPolicy.NONE))


def _load_image(path, what):
    try:
        image = Gimp.file_load(Gimp.RunMode.NONINTERACTIVE, Gio.File.new_for_path(path))
    except GLib.Error as exc:
        raise PluginError(f"GIMP could not open {what} {path}: {exc.message}") from exc
    if image is None:
        raise PluginError(f"GIMP could not open {what} {path}")
    return image


def _style_png(path):
    """PNG bytes of the style image: a PNG file as it is, anything else GIMP can open converted to PNG."""
    path = check_style_file(path)  # missing: the same words as in Krita
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as exc:
        raise PluginError(f"cannot read the style image {path}: {exc.strerror or exc}") from exc
    if is_png(data):
        return data
    image = _load_image(path, "the style image")
    try:
        w, h = image.get_width(), image.get_height()
        nw, nh = logic.scaled_to_fit(w, h, MAX_STYLE_SIDE)
        if (nw, nh) != (w, h):
            image.scale(nw, nh)
        layer = Gimp.Layer.new_from_visible(image, image, "style")
        image.insert_layer(layer, None, 0)
        rgba = _read_rgba(layer, 0, 0, nw, nh)
    finally:
        image.delete()
    return encode_png(nw, nh, logic.rgba_to_rgb(rgba), channels=3)


def _decode_png_with_gimp(png, width, height):
    """RGBA u8 pixels of a PNG, decoded by GIMP's own PNG loader (fast and exact for 8-bit PNGs)."""
    check_result(png, width, height)
    fd, path = tempfile.mkstemp(prefix="stylelayer-", suffix=".png")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(png)
        image = _load_image(path, "the server's result")
        try:
            layers = image.get_layers()
            if len(layers) != 1 or (layers[0].get_width(), layers[0].get_height()) != (width, height):
                raise PluginError("the server's result image could not be read back")
            return _read_rgba(layers[0], 0, 0, width, height)
        finally:
            image.delete()
    finally:
        os.unlink(path)


class _CancelWindow:
    """A small window with a progress bar and a Cancel button (interactive runs only).

    GIMP's own progress bar can only kill a plug-in; this lets the painter cancel the server job cleanly.
    """

    def __init__(self, title, seed=None):
        gi.require_version("Gtk", "3.0")
        from gi.repository import Gtk, Pango

        self._gtk = Gtk
        self.cancelled = False
        self._window = Gtk.Window(title=title)
        self._window.set_default_size(440, -1)
        self._window.set_border_width(12)
        box = Gtk.Box(orientation=Gtk.Orientation.VERTICAL, spacing=8)
        # the status line as a label in the normal text colour (a progress bar's own text is small and greyed);
        # one line, so the window keeps its size and the Cancel button stays put
        self._label = Gtk.Label(label=logic.PROGRESS_TITLE, xalign=0.0, ellipsize=Pango.EllipsizeMode.END)
        seed_label = Gtk.Label(label=f"Variation {seed}" if seed else "", xalign=0.0)
        self._bar = Gtk.ProgressBar()
        button = Gtk.Button.new_with_mnemonic("_Cancel")
        button.connect("clicked", self._on_cancel)
        self._window.connect("delete-event", self._on_delete)
        box.pack_start(self._label, False, False, 0)
        box.pack_start(seed_label, False, False, 0)
        box.pack_start(self._bar, False, False, 0)
        box.pack_start(button, False, False, 0)
        self._window.add(box)
        self._window.show_all()

    def _on_cancel(self, *_args):
        self.cancelled = True
        self._label.set_text("Cancelling…")

    def _on_delete(self, *_args):
        self._on_cancel()
        return True

    def update(self, fraction, text):
        if not self.cancelled:
            if fraction is None:
                self._bar.pulse()
            else:
                self._bar.set_fraction(fraction)
            self._label.set_text(text)
        while self._gtk.events_pending():
            self._gtk.main_iteration_do(False)

    def close(self):
        self._window.destroy()
        while self._gtk.events_pending():
            self._gtk.main_iteration_do(False)


def _make_client(url, token, timeout=30):
    """The HTTP client (stylelayer_workflow.connect: the token argument, else the token file, else
    $STYLELAYER_TOKEN). Server-url `managed`: the plug-in's own server (stylelayer_managed_gimp.py), started on the
    client's first request, with its own token."""
    managed = managed_gimp.running_server if managed_gimp.is_managed(url) else None
    return connect(url, token, timeout, managed)


def _run_job(client, content_png, style_png, params, interactive, loss_plot, regions=()):
    """Runs the server job (stylelayer_workflow.run_job) off the main thread while this one shows its progress;
    returns its JobResult, or None when cancelled. `regions`: stylelayer_regions.region_form's fields."""

    def work(on_progress, should_cancel):
        return run_job(
            client,
            content_png,
            style_png,
            None,
            params,
            on_progress,
            should_cancel,
            loss_plot=loss_plot,
            regions=regions,
        )

    Gimp.progress_init(f"{TITLE}: sending to {client.base_url}")
    window = _CancelWindow(TITLE, params.get("seed")) if interactive else None
    runner = JobRunner(work, logic.PROGRESS_TITLE).start()
    last = (None, None)
    try:
        while not runner.wait(0.1):
            fraction, text = runner.fraction, runner.text
            if window is not None:
                window.update(fraction, text)
                if window.cancelled and not runner.cancelled:
                    runner.cancel()
            if (fraction, text) != last:
                if text != last[1]:
                    Gimp.progress_set_text(text)
                    logic.log_status("progress: " + text)
                if fraction is not None:
                    Gimp.progress_update(fraction)
                last = (fraction, text)
            elif fraction is None:
                Gimp.progress_pulse()
    finally:
        if window is not None:
            window.close()
    Gimp.progress_update(1.0)
    if runner.error is None:
        return runner.result
    if is_cancelled(runner.error) or runner.cancelled:
        return None
    raise runner.error  # run() turns it into the message both plug-ins show (error_message)


def _layer_type(image, with_alpha):
    base = image.get_base_type()
    if base == Gimp.ImageBaseType.RGB:
        return Gimp.ImageType.RGBA_IMAGE if with_alpha else Gimp.ImageType.RGB_IMAGE
    if base == Gimp.ImageBaseType.GRAY:
        return Gimp.ImageType.GRAYA_IMAGE if with_alpha else Gimp.ImageType.GRAY_IMAGE
    raise PluginError(
        "this image is indexed (a palette of colours), and style transfer paints new colours: convert it with "
        "Image > Mode > RGB first"
    )


def stylize(procedure, run_mode, image, drawables, config, seed):
    """Does the work with `seed` (the variation); raises PluginError for what the painter should read. Returns
    False when cancelled."""
    if len(drawables) != 1:
        raise PluginError(f"select exactly one layer (got {len(drawables)} drawables)")
    drawable = drawables[0]
    if not isinstance(drawable, Gimp.Layer):
        raise PluginError("select a layer (not a channel or a layer mask)")

    style_file = config.get_property("style-file")
    style_path = style_file.get_path() if style_file is not None else None
    pairs = parse_region_spec(config.get_property("regions") or "")  # None when a script leaves it out
    if not style_path and not pairs:
        raise PluginError("choose a style image (a local file)")
    size, iterations = logic.preset_size_iterations(
        config.get_property("preset"), config.get_property("size"), config.get_property("iterations")
    )
    params = build_params(
        iterations=iterations,
        strength=config.get_property("style-strength"),
        preserve_colors=config.get_property("preserve-colors"),
        size=size,
        seed=seed,
    )
    client = _make_client(config.get_property("server-url"), config.get_property("server-token"))
    loss_file = config.get_property("loss-plot")
    loss_path = loss_file.get_path() if loss_file is not None else None

    x, y, w, h = _region(drawable)
    ox, oy = drawable.get_offsets()[1:]
    mask = _selection_mask(image, ox + x, oy + y, w, h)
    layer_type = _layer_type(image, drawable.has_alpha() or mask is not None)  # transparent outside a selection
    has_alpha = drawable.has_alpha()
    rgba = _read_rgba(drawable, x, y, w, h)
    if has_alpha:
        content_png = encode_png(w, h, rgba, channels=4)
    else:
        content_png = encode_png(w, h, logic.rgba_to_rgb(rgba), channels=3)
    if pairs:  # a style per channel; the style image is not used
        regions = _channel_regions(image, pairs, (ox + x, oy + y, w, h))
        form, style_png, label = region_form(regions, w, h, _style_png), None, regions_label(regions)
    else:
        form, style_png, label = [], _style_png(style_path), style_label(style_path)

    interactive = run_mode == Gimp.RunMode.INTERACTIVE
    outcome = _run_job(client, content_png, style_png, params, interactive, bool(loss_path), form)
    if outcome is None:
        return False
    result_png, loss_png = outcome
    result_rgba = _decode_png_with_gimp(result_png, w, h)
    if mask is not None:  # transparent outside the selection, also with the layer mask disabled
        result_rgba = clear_outside(result_rgba, mask)

    siblings, target = _siblings(image, drawable)
    place = placement(label, [item.get_name() for item in siblings], target)
    name, above = place.name, siblings[place.above]
    image.undo_group_start()
    new_layer, inserted = None, False
    try:
        new_layer = Gimp.Layer.new(image, name, w, h, layer_type, 100.0, Gimp.LayerMode.NORMAL)
        if new_layer is None:
            raise PluginError("GIMP could not create the new layer")
        if not image.insert_layer(new_layer, drawable.get_parent(), image.get_item_position(above)):
            raise PluginError("GIMP could not insert the new layer")
        inserted = True
        new_layer.set_offsets(ox + x, oy + y)
        buffer = new_layer.get_buffer()
        buffer.set(_rect(0, 0, w, h), PIXEL_FORMAT, result_rgba)
        buffer.flush()
        if mask is not None:  # the selection's shape, editable as a layer mask
            layer_mask = new_layer.create_mask(Gimp.AddMaskType.WHITE)
            if layer_mask is None or not new_layer.add_mask(layer_mask):
                raise PluginError("GIMP could not add the selection's layer mask")
            mask_buffer = layer_mask.get_buffer()
            mask_buffer.set(_rect(0, 0, w, h), MASK_FORMAT, mask)
            mask_buffer.flush()
            layer_mask.update(0, 0, w, h)
        new_layer.update(0, 0, w, h)
        image.set_selected_layers([new_layer])
    except Exception:
        if inserted:
            image.remove_layer(new_layer)
        raise
    finally:
        image.undo_group_end()
    Gimp.displays_flush()
    if loss_path:
        logic.save_loss_plot(loss_png, loss_path)
    return True


def _siblings(image, drawable):
    """(the layers beside `drawable`, itself included, bottom first as stylelayer_workflow.placement takes them;
    its index among them). Compared by id: gi hands out a new wrapper on each call."""
    parent = drawable.get_parent()
    siblings = list(reversed(parent.get_children() if parent is not None else image.get_layers()))
    return siblings, [item.get_id() for item in siblings].index(drawable.get_id())


def _region(drawable):
    """(x, y, w, h) in the drawable's own coordinates: the part of it inside the selection's bounds."""
    intersects, x, y, w, h = drawable.mask_intersect()
    if not intersects or w <= 0 or h <= 0:
        raise PluginError("the selection does not touch the active layer")
    return x, y, w, h


def _selection_mask(image, x, y, w, h):
    """The selection over (x, y, w, h) in image coordinates, one byte a pixel with a hard edge faded in (see
    feather_mask); None without a selection."""
    if Gimp.Selection.is_empty(image):
        return None
    selection = image.get_selection()
    raw = bytes(selection.get_buffer().get(_rect(x, y, w, h), 1.0, MASK_FORMAT, Gegl.AbyssPolicy.NONE))
    sx1, sy1, sx2, sy2 = Gimp.Selection.bounds(image)[-4:]  # (success, non-empty, x1, y1, x2, y2)
    edges = open_edges((x, y, w, h), (sx1, sy1, sx2 - sx1, sy2 - sy1), (0, 0, image.get_width(), image.get_height()))
    return feather_mask(raw, w, h, open_edges=edges)


def _channel_regions(image, pairs, rect):
    """The regions of (channel name, style file) pairs: each saved selection's values over `rect` (x, y, w, h in
    image coordinates), one byte a pixel; PluginError naming a channel the image does not have."""
    channels = {channel.get_name(): channel for channel in image.get_channels()}
    regions = []
    for name, path in pairs:
        channel = channels.get(name)
        if channel is None:
            known = ", ".join(f"“{known}”" for known in channels) or "none"
            raise PluginError(
                f"the image has no channel “{name}” (its channels: {known}); save each region's selection with "
                "Select > Save to Channel and name the channel"
            )
        mask = bytes(channel.get_buffer().get(_rect(*rect), 1.0, MASK_FORMAT, Gegl.AbyssPolicy.NONE))
        regions.append(Region(name, mask, RegionStyle(path=path)))
    return regions


def _last_values_path():
    return os.path.join(Gimp.directory(), logic.LAST_VALUES_FILE)


def _restore_last_values(config):
    """The values of the last run, failed ones included (GIMP restores only a successful run's): (True when there
    were any, the variation it painted or None). A token an older version kept there moves to the token file."""
    path = _last_values_path()
    values = logic.load_last_values(path)
    last_seed = values.pop(logic.LAST_SEED, None)
    old_token = values.pop(logic.OLD_TOKEN, None)
    if old_token is not None:  # kept there by an older version: into the token file, out of this one
        with contextlib.suppress(OSError):
            values["server-token"] = migrate_token(old_token)
            logic.save_last_values(path, {**values, logic.LAST_SEED: last_seed})
    for name, value in values.items():
        try:
            config.set_property(name, Gio.File.new_for_path(value) if name == "style-file" else value)
        except (TypeError, ValueError, OverflowError):
            continue  # written by another version of the plug-in
    return bool(values), last_seed if isinstance(last_seed, int) and last_seed > 0 else None


def _remember_values(config, seed):
    """The dialog's values and the run's variation `seed` for the next dialog; the token goes to its own file."""
    values = {name: config.get_property(name) for name in logic.REMEMBERED}
    style = values.get("style-file")
    values["style-file"] = style.get_path() if style is not None else None
    values[logic.LAST_SEED] = seed
    with contextlib.suppress(OSError):
        save_token(config.get_property("server-token"))
    with contextlib.suppress(OSError):  # GIMP's own folder not writable: not remembered, the run goes on
        logic.save_last_values(_last_values_path(), values)


def _target_text(image, drawable):
    try:
        _x, _y, w, h = _region(drawable)
    except PluginError as exc:
        return f"Nothing to paint: {exc}."
    image_file = image.get_file() or image.get_imported_file()  # an .xcf, else the file it was opened from
    name = os.path.basename(image_file.get_path() or "") if image_file is not None else ""
    where = " (the selection's part of it)" if not Gimp.Selection.is_empty(image) else ""
    return f"Paints layer “{drawable.get_name()}” of “{name or image.get_name()}”: {w}×{h} px{where}."


def _error(procedure, status, message):
    """GIMP's error box is titled with the procedure's name already: the message alone, as a sentence."""
    return procedure.new_return_values(status, GLib.Error(sentence(message)))


def run(procedure, run_mode, image, drawables, config, _data):
    seed = config.get_property("seed")
    if run_mode == Gimp.RunMode.INTERACTIVE:
        from stylelayer_dialog import StyleDialog

        had_values, last_seed = _restore_last_values(config)
        if not config.get_property("server-token"):
            config.set_property("server-token", load_token())
        drawable = drawables[0] if len(drawables) == 1 else None
        target = _target_text(image, drawable) if isinstance(drawable, Gimp.Layer) else "Select one layer."
        try:
            _layer_type(image, True)
        except PluginError as exc:  # an indexed image: said at once, and OK stays off
            target = "Cannot paint this image: " + error_message(exc)
        region = _region(drawable)[2:] if isinstance(drawable, Gimp.Layer) and target.startswith("Paints") else None
        channels = [channel.get_name() for channel in image.get_channels()]
        dialog = StyleDialog(
            procedure, config, TITLE, _make_client, target, region, not had_values, last_seed, channels
        )
        if not dialog.run():
            config.set_property("server-token", "")  # GIMP keeps the values in its settings: never the token
            return procedure.new_return_values(Gimp.PDBStatusType.CANCEL, GLib.Error())
        seed = config.get_property("seed")
        seed = seed if seed > 0 else new_seed()
        _remember_values(config, seed)  # kept even when the run fails below
    elif seed <= 0:
        seed = new_seed()
    logic.log_status(f"seed: {seed}")
    try:
        done = stylize(procedure, run_mode, image, drawables, config, seed)
    except Exception as exc:  # noqa: BLE001 - a PluginError, a server error, a bug or a GIMP failure: a clear message, no traceback
        return _error(procedure, Gimp.PDBStatusType.EXECUTION_ERROR, error_message(exc))
    finally:
        if run_mode == Gimp.RunMode.INTERACTIVE:
            config.set_property("server-token", "")  # GIMP keeps the values in its settings: never the token
    if not done:
        return procedure.new_return_values(Gimp.PDBStatusType.CANCEL, GLib.Error())
    return procedure.new_return_values(Gimp.PDBStatusType.SUCCESS, GLib.Error())


class StyleLayer(Gimp.PlugIn):
    def do_set_i18n(self, _name):
        return False

    def do_query_procedures(self):
        return [PROC_NAME]

    def do_create_procedure(self, name):
        procedure = Gimp.ImageProcedure.new(self, name, Gimp.PDBProcType.PLUGIN, run, None)
        procedure.set_image_types("*")  # indexed images too: the plug-in says why it cannot paint them
        procedure.set_sensitivity_mask(Gimp.ProcedureSensitivityMask.DRAWABLE)
        procedure.set_menu_label("_Neural Style Transfer…")
        procedure.add_menu_path("<Image>/Filters/Artistic")
        procedure.set_documentation(
            "Paint the active layer in the style of another image (neural style transfer)",
            "Sends the active layer (or the selection's bounding box) and a style image to a running "
            "stylelayer server and adds the result as a new layer above it. The source layer is not changed.",
            name,
        )
        procedure.set_attribution("stylelayer contributors", "MIT", "2025")
        rw = GObject.ParamFlags.READWRITE
        procedure.add_file_argument(
            "style-file",
            "Style ima_ge",
            "A painting or picture whose look (brushwork, texture, colours) is applied",
            Gimp.FileChooserAction.ANY,
            True,
            None,
            rw,
        )
        presets = Gimp.Choice.new()
        for number, (key, label) in enumerate((*PRESET_LABELS.items(), (logic.CUSTOM, "Custom"))):
            presets.add(key, number, label, "")
        procedure.add_choice_argument(
            "preset",
            "_Preset",
            "preview, normal, high or full (resolution: the layer's own size, coarse to fine, with the canvas's detail "
            "at 100% zoom) set working size and iterations; custom uses them as given",
            presets,
            logic.CUSTOM,
            rw,
        )
        procedure.add_int_argument(
            "iterations",
            "_Iterations",
            "How long the server paints: more takes the style further and takes longer",
            1,
            MAX_ITERATIONS,
            logic.DEFAULT_ITERATIONS,
            rw,
        )
        procedure.add_double_argument(
            "style-strength",
            "Style stre_ngth",
            "How much of the style takes over the picture: 1 is the usual balance, 2-5 paints over more of it, "
            "0.2-0.5 keeps more of the layer's shapes and detail",
            MIN_STRENGTH,
            MAX_STRENGTH,
            1.0,
            rw,
        )
        procedure.add_boolean_argument(
            "preserve-colors",
            "Keep the la_yer's colours",
            "Keep the layer's own colours, take only the style's strokes and texture",
            False,
            rw,
        )
        procedure.add_int_argument(
            "size",
            "_Working size (px)",
            "Longest side the server paints at; the result is scaled back to the layer's size. Smaller is much "
            "faster with bigger strokes, larger keeps finer detail. 0: the layer's own size",
            0,
            MAX_SIZE,
            logic.DEFAULT_SIZE,
            rw,
        )
        procedure.add_int_argument(
            "seed",
            "Variation (seed)",
            "0: a new variation each run; any other number gives the same result again for the same settings",
            -1,
            2**31 - 1,
            0,
            rw,
        )
        procedure.add_string_argument(
            "server-url",
            "Server _URL",
            "Address of the stylelayer server: http://127.0.0.1:8765 on this machine (`stylelayer serve`), or the URL "
            "`stylelayer serve --host 0.0.0.0` prints on another",
            DEFAULT_SERVER_URL,
            rw,
        )
        procedure.add_string_argument(
            "server-token",
            "To_ken",
            "The token the server was started with (its STYLELAYER_TOKEN or --token-file), only for a server on "
            "another machine; empty: the one stored before, else $STYLELAYER_TOKEN. Kept in a file only you can read "
            "(~/.config/stylelayer/plugin-token), shown as dots",
            "",
            rw,
        )
        procedure.add_string_argument(
            "regions",
            "Style per ch_annel",
            "A style per region: channel name=style image file, separated by ';' (e.g. Sky=/art/starry.jpg; "
            "Ground=/art/scream.jpg); the file choosers below fill it in. Save each region's selection as a channel "
            "first (Select > Save to Channel). "
            "The result is still one new layer; with regions the style image above is not used. Empty: one style",
            "",
            rw,
        )
        procedure.add_file_argument(
            "loss-plot",
            "Loss curves PNG",
            "Optional: a PNG file for the loss curves of the run (log scale, one line per term); none: not saved",
            Gimp.FileChooserAction.SAVE,
            True,
            None,
            rw,
        )
        return procedure


if __name__ == "__main__":
    Gimp.main(StyleLayer.__gtype__, sys.argv)
