"""The "Regions" panel of Krita's dialog: a style per region (Gatys et al. 2017's spatial control).

The regions are the active layer's selection masks and local selections, or the layers of a chosen group (each
layer's alpha is a region). The painter picks a style in the dialog's own style chooser (a file or a library
style), selects a region in the list and presses "Use the style above for this region". The run still adds one layer.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from PyQt5.QtWidgets import QComboBox, QGroupBox, QHBoxLayout, QLabel, QListWidget, QPushButton, QVBoxLayout
from stylelayer_messages import PluginError, error_message
from stylelayer_regions import Region, RegionStyle

from . import transfer

MASKS = "masks"  # the source combo's data for "the layer's selection masks"; a group's is its node id
NO_STYLE = "no style yet"


class RegionsPanel(QGroupBox):
    """`chosen_style()` is the style the dialog's chooser shows (PluginError when none); `show_message(ok, text)`
    tells the painter what went wrong."""

    def __init__(self, chosen_style: Callable[[], RegionStyle], show_message: Callable[[bool, str], None]):
        super().__init__("Regions: a style per selection mask or layer")
        self._chosen_style, self._show_message = chosen_style, show_message
        self.styles: dict[Any, RegionStyle] = {}  # by node id
        self.nodes: list[Any] = []  # the regions' selection masks or layers, as the list shows them
        self._groups: list[tuple[Any, str]] = []  # (id, name) of the document's groups, as the combo offers them
        self._target: tuple[Any, Any] = (None, None)  # the document and layer of the last refresh
        layout = QVBoxLayout(self)
        row = QHBoxLayout()
        self.source_combo = QComboBox()
        self.source_combo.addItem("None: one style for the whole layer", None)
        self.source_combo.addItem("The layer's selection masks", MASKS)
        self.source_combo.setToolTip(
            "Paint each region in its own style: the active layer's selection masks (right-click the layer > Add > "
            "Local Selection, one per region), or the layers of a group (each layer's painted pixels are a region)."
        )
        row.addWidget(QLabel("Regions"))
        row.addWidget(self.source_combo, 1)
        layout.addLayout(row)
        self.region_list = QListWidget()
        self.region_list.setFixedHeight(4 * self.region_list.fontMetrics().height() + 12)
        layout.addWidget(self.region_list)
        self.use_button = QPushButton("Use the style above for this region")
        self.use_button.setToolTip("Choose a style above (a file or a library style), select a region, press this.")
        self.use_button.clicked.connect(self.use_chosen_style)
        layout.addWidget(self.use_button)
        self.source_combo.currentIndexChanged.connect(lambda _index: self.refresh(*self._target))
        self._show([])

    def active(self) -> bool:
        """True when the run paints regions, not one style over the whole layer."""
        return self.source_combo.currentData() is not None

    def refresh(self, doc: Any, node: Any) -> None:
        """Offer the document's groups, and list the regions the current choice gives for layer `node`."""
        self._target = (doc, node)
        groups = [(transfer.node_key(group), group.name()) for group in transfer.groups(doc)] if doc is not None else []
        if groups != self._groups:
            self._groups = groups
            current = self.source_combo.currentData()
            self.source_combo.blockSignals(True)
            while self.source_combo.count() > 2:
                self.source_combo.removeItem(2)
            for key, name in groups:
                self.source_combo.addItem(f"The layers of group “{name}”", key)
            index = self.source_combo.findData(current)
            self.source_combo.setCurrentIndex(index if index >= 0 else 0)
            self.source_combo.blockSignals(False)
        self._show(self._region_nodes(doc, node))

    def _region_nodes(self, doc: Any, node: Any) -> list[Any]:
        choice = self.source_combo.currentData()
        if choice is None or doc is None:
            return []
        if choice == MASKS:
            return transfer.selection_masks(node) if node is not None else []
        group = next((g for g in transfer.groups(doc) if transfer.node_key(g) == choice), None)
        return transfer.group_layers(group) if group is not None else []

    def _show(self, nodes: list[Any]) -> None:
        """The list: one row a region, with its style; rebuilt only when the regions or their styles change."""
        self.nodes = nodes if self.active() else []
        rows = [f"{n.name()}: {self._style_text(n)}" for n in self.nodes]
        if rows != [self.region_list.item(i).text() for i in range(self.region_list.count())]:
            current = self.region_list.currentRow()
            self.region_list.clear()
            self.region_list.addItems(rows)
            if 0 <= current < len(rows):
                self.region_list.setCurrentRow(current)
        self.region_list.setEnabled(self.active())
        self.use_button.setEnabled(bool(self.nodes))

    def _style_text(self, node: Any) -> str:
        style = self.styles.get(transfer.node_key(node))
        return style.label if style is not None else NO_STYLE

    def use_chosen_style(self) -> None:
        """The dialog's chosen style for the selected region (the first, when none is selected)."""
        if not self.nodes:
            return
        row = max(self.region_list.currentRow(), 0)
        try:
            self.styles[transfer.node_key(self.nodes[row])] = self._chosen_style()
        except PluginError as exc:
            self._show_message(False, error_message(exc))
            return
        self._show(self.nodes)
        self.region_list.setCurrentRow(row)

    def regions(self, source: transfer.Source) -> list[Region]:
        """The regions of a run on `source`; PluginError when the choice gives none."""
        if not self.nodes:
            if self.source_combo.currentData() == MASKS:
                raise PluginError(
                    "The layer has no selection masks: add one per region (right-click the layer > Add > Local "
                    "Selection), or choose None under Regions."
                )
            raise PluginError("The group has no layers: add one per region, or choose None under Regions.")
        return transfer.read_regions(source, self.nodes, self.styles)
