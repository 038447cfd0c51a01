"""PNG in and out of Krita through QImage: much faster than pure Python for big layers, and it reads every image
format Qt knows for the style. Needs PyQt5 (Krita has it), not Krita itself."""

from PyQt5.QtCore import QBuffer, QByteArray, QIODevice, Qt
from PyQt5.QtGui import QImage
from stylelayer_messages import PluginError
from stylelayer_params import MAX_STYLE_SIDE, check_style_file


def png_bytes(image):
    """A QImage encoded as PNG."""
    data = QByteArray()
    buf = QBuffer(data)
    buf.open(QIODevice.WriteOnly)
    if not image.save(buf, "PNG"):
        raise PluginError("Qt could not encode the image as PNG.")
    buf.close()
    return bytes(data)


class QtCodec:
    """The `transfer.Codec` Krita uses: RGBA bytes <-> PNG, and a style file as PNG bytes."""

    def encode(self, width, height, rgba):
        keep = bytes(rgba)  # QImage does not copy: keep the buffer alive until saved
        image = QImage(keep, width, height, width * 4, QImage.Format_RGBA8888)
        return png_bytes(image)

    def decode(self, png):
        image = QImage.fromData(bytes(png), "PNG")
        if image.isNull():
            raise PluginError("The server's reply is not a PNG image Krita can read.")
        image = image.convertToFormat(QImage.Format_RGBA8888)
        width, height, stride = image.width(), image.height(), image.bytesPerLine()
        ptr = image.constBits()
        ptr.setsize(stride * height)
        data = bytes(ptr)
        if stride != width * 4:
            data = b"".join(data[y * stride : y * stride + width * 4] for y in range(height))
        return width, height, data

    def load_style(self, path):
        """The style file as PNG bytes, scaled down to MAX_STYLE_SIDE when it is larger."""
        path = check_style_file(path)  # missing: the same words as in GIMP
        image = QImage(path)
        if image.isNull():
            raise PluginError(f"Cannot read the style image {path}: not an image file Qt understands.")
        if max(image.width(), image.height()) > MAX_STYLE_SIDE:
            image = image.scaled(MAX_STYLE_SIDE, MAX_STYLE_SIDE, Qt.KeepAspectRatio, Qt.SmoothTransformation)
        return png_bytes(image.convertToFormat(QImage.Format_RGBA8888))
