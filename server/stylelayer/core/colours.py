"""Whose colours the result has: the style's (the default) or the content's, chosen once per job.

Luminance-only transfer (Gatys et al. 2016, "Preserving Color in Neural Artistic Style Transfer") optimises grey
images and puts the content's chroma back. Every step that sees colour (the content target, the style targets, a
start from the style, previews, the result) asks the job's `Colours` instead of testing the option itself.
"""

from __future__ import annotations

from PIL import Image
from torch import Tensor

from . import imaging


class StyleColours:
    """Colours come with the style: every image is used as it is."""

    def content(self, rgb: Tensor) -> Tensor:
        return rgb

    def style(self, image: Image.Image) -> Image.Image:
        return image

    def start(self, rgb: Tensor) -> Tensor:
        return rgb

    def shown(self, image: Tensor) -> Tensor:
        return image


class ContentColours:
    """The content's colours: the optimisation sees luminance only; what is shown gets `reference`'s chroma."""

    def __init__(self, reference: Tensor):
        self.reference = reference  # the level's content, in colour

    def content(self, rgb: Tensor) -> Tensor:
        return imaging.luminance_image(rgb)

    def style(self, image: Image.Image) -> Image.Image:
        """The style's luminance, shifted to the content's mean and spread so that its tones fit the content."""
        return imaging.to_image(imaging.luminance_image(imaging.to_tensor(image), match=self.reference.cpu()))

    def start(self, rgb: Tensor) -> Tensor:
        return imaging.luminance_image(rgb)

    def shown(self, image: Tensor) -> Tensor:
        return imaging.recolor(image, self.reference)


Colours = StyleColours | ContentColours


def colours_for(preserve_colors: bool, content: Tensor | None) -> Colours:
    """A level's colours: the content's where asked for and there is a content (texture mode has none)."""
    return ContentColours(content) if preserve_colors and content is not None else StyleColours()


def final_colours(result: Image.Image, content: Image.Image | None, preserve_colors: bool) -> Image.Image:
    """The result at full size, with the full-size content's chroma where colours are preserved."""
    if not preserve_colors or content is None:
        return result
    return imaging.to_image(ContentColours(imaging.to_tensor(content)).shown(imaging.to_tensor(result)))
