"""Both hosts run one workflow (stylelayer_workflow.py): the Krita adapter (transfer.py) and the GIMP one
(stylelayer_gimp.py, imported here with a stand-in for gi) make their client through its `connect`, so the token
fallbacks are the same in both: the typed token, else the token file, else $STYLELAYER_TOKEN."""

from __future__ import annotations

import sys
import types
from unittest import mock

import pytest
from krita_fakes import PillowCodec
from stylelayer_krita import transfer
from stylelayer_messages import PluginError
from stylelayer_settings import save_token

from stylelayer.install import PACKAGE_DIRS, assemble


class Recorded(PluginError):
    """Raised by the stand-in client once it has recorded how it was made: nothing goes on the network."""


@pytest.fixture(scope="module")
def gimp_plugin(tmp_path_factory):
    """The assembled GIMP plug-in's main module (gi replaced by stand-ins) and the workflow module it imports."""
    folder = assemble("gimp", tmp_path_factory.mktemp("gimp")) / PACKAGE_DIRS["gimp"]
    repository = types.SimpleNamespace(
        Gegl=mock.MagicMock(), Gimp=mock.MagicMock(PlugIn=object), Gio=mock.MagicMock(), GLib=mock.MagicMock()
    )
    repository.GObject = mock.MagicMock()
    gi = types.ModuleType("gi")
    gi.require_version = lambda *_args: None  # type: ignore[attr-defined]
    gi.repository = repository  # type: ignore[attr-defined]
    saved = dict(sys.modules)
    sys.modules.update({"gi": gi, "gi.repository": repository})  # type: ignore[dict-item]
    sys.path.insert(0, str(folder))
    try:
        import stylelayer_gimp
        import stylelayer_workflow

        yield stylelayer_gimp, stylelayer_workflow
    finally:
        sys.path.remove(str(folder))
        for name in set(sys.modules) - set(saved):
            del sys.modules[name]


@pytest.mark.parametrize(
    ("stored", "env", "expected"),
    [("from-file", "from-env", "from-file"), ("", "from-env", "from-env"), ("", "", None)],
)
def test_both_hosts_fall_back_to_the_token_file_then_the_environment(
    gimp_plugin, fake_doc, tmp_path, monkeypatch, stored, env, expected
):
    gimp, gimp_workflow = gimp_plugin
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "cfg"))
    monkeypatch.setenv("STYLELAYER_TOKEN", env)
    save_token(stored)
    made: list[tuple[str, str | None]] = []

    def client(base_url, token=None, timeout=30):
        made.append((base_url, token))
        raise Recorded("made")

    monkeypatch.setattr(gimp_workflow, "StylelayerClient", client)  # the one both hosts import by this name
    style = tmp_path / "style.png"
    style.write_bytes(b"\x89PNG")
    with pytest.raises(Recorded):
        transfer.run_style_transfer(fake_doc, fake_doc.active, str(style), {}, "http://krita:1", codec=PillowCodec())
    with pytest.raises(Recorded):
        gimp._make_client("http://gimp:1/", "")
    assert made == [("http://krita:1", expected), ("http://gimp:1", expected)]
    with pytest.raises(Recorded):
        gimp._make_client("http://gimp:1", " typed ")  # GIMP's argument, as Krita's field: before both
    assert made[-1] == ("http://gimp:1", "typed")


def test_gimp_managed_url_makes_the_workflows_lazy_client(gimp_plugin) -> None:
    gimp, gimp_workflow = gimp_plugin
    assert isinstance(gimp._make_client("managed", ""), gimp_workflow.LazyClient)  # started on its first request
