"""stylelayer: neural style transfer (Gatys et al.) for painters, with a local server and Krita/GIMP plug-ins."""

__version__ = "0.1.0"
