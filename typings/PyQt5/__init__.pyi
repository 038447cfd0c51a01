"""PyQt5, which Krita bundles: its modules as the Krita plug-in uses them (Any; see QtCore.pyi)."""

from . import QtCore as QtCore
from . import QtGui as QtGui
from . import QtWidgets as QtWidgets
