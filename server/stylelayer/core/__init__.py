"""The optimisation core: VGG19, losses, tiling, the memory plan and the engine. It knows nothing of HTTP or hosts."""
