"""The style library: add, list, thumbnail, use in a job, delete; ids never reach the filesystem as paths."""

from __future__ import annotations

import io

import pytest
from PIL import Image
from protocol_helpers import gradient, png_bytes, stylelayer_client

from stylelayer.api.style_library import StyleLibrary, StyleNotFound


def test_style_library_life_cycle(server, fake_engine, tmp_path) -> None:
    _, client = server
    style = gradient(300, 200, "RGBA")
    meta = client.add_style("Starry\nnight\x00", png_bytes(style))
    assert meta["name"] == "Starrynight" and (meta["width"], meta["height"]) == (300, 200)
    assert len(meta["id"]) == 16
    assert [s["id"] for s in client.styles()] == [meta["id"]]

    thumb = Image.open(io.BytesIO(client.style_thumbnail(meta["id"])))
    assert max(thumb.size) == 256 and thumb.size == (256, 171)

    client.stylize(png_bytes(gradient()), None, style_id=meta["id"], params={"iterations": 1})
    _, styles, _ = fake_engine.calls[-1]
    assert len(styles) == 1 and styles[0].tobytes() == style.tobytes()

    # library ids and uploaded images combine
    client.stylize(png_bytes(gradient()), png_bytes(gradient(8, 8)), style_id=[meta["id"]], params={"iterations": 1})
    assert [s.size for s in fake_engine.calls[-1][1]] == [(8, 8), (300, 200)]

    client.delete_style(meta["id"])
    assert client.styles() == []
    for call in (client.style_thumbnail, client.delete_style):
        with pytest.raises(stylelayer_client.StylelayerError) as err:
            call(meta["id"])
        assert (err.value.status, err.value.code) == (404, "style_not_found")


def test_unknown_style_id_in_job_is_404(client) -> None:
    with pytest.raises(stylelayer_client.StylelayerError) as err:
        client.submit(png_bytes(gradient()), None, style_id="..%2F..%2Fetc%2Fpasswd")
    assert (err.value.status, err.value.code) == (404, "style_not_found")


def test_add_style_errors(client) -> None:
    with pytest.raises(stylelayer_client.StylelayerError) as err:
        client.add_style("x", b"not an image")
    assert err.value.status == 415
    with pytest.raises(stylelayer_client.StylelayerError) as err:
        client.add_style("\x00\x01 ", png_bytes(gradient()))
    assert (err.value.status, err.value.code) == (400, "bad_param")
    assert client.styles() == []


@pytest.mark.parametrize("bad", ["../secret", "/etc/passwd", "ABCDEF0123456789", "0123456789abcde", "a" * 17, ""])
def test_library_refuses_malformed_ids_before_touching_disk(tmp_path, bad) -> None:
    library = StyleLibrary(tmp_path / "lib")
    (tmp_path / "secret.png").write_bytes(png_bytes(gradient()))
    for call in (library.image, library.thumbnail, library.delete):
        with pytest.raises(StyleNotFound):
            call(bad)
    assert (tmp_path / "secret.png").is_file()


def test_library_persists_across_instances(tmp_path) -> None:
    meta = StyleLibrary(tmp_path).add("kept", gradient())
    again = StyleLibrary(tmp_path)
    assert again.entries() == [meta]
    assert again.image(meta["id"]).tobytes() == gradient().tobytes()
