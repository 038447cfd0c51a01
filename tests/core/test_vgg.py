"""Weight loading: the bundled Caffe VGG19, user files (weights_only), torchvision's offline failure."""

import pickle

import pytest
import torch

from stylelayer.core import vgg
from stylelayer.core.vgg import CAFFE, TORCHVISION, WeightsError, load_vgg19


@pytest.fixture(scope="module")
def caffe_model():
    return load_vgg19("caffe")


def test_caffe_weights_shapes_and_known_values(caffe_model):
    convs = caffe_model.convs
    assert len(convs) == 16
    assert tuple(convs["conv1_1"].weight.shape) == (64, 3, 3, 3)
    assert tuple(convs["conv5_4"].weight.shape) == (512, 512, 3, 3)
    # First biases of the original Caffe VGG19 conv1_1 (Simonyan & Zisserman's release).
    expected = torch.tensor([0.7301776, 0.0649363, 0.0342885, 0.8260386])
    assert torch.allclose(convs["conv1_1"].bias[:4], expected, atol=1e-6)
    # Dequantised weights take at most 256 distinct values per layer.
    assert convs["conv3_1"].weight.unique().numel() <= 256
    assert all(not p.requires_grad for p in caffe_model.parameters())


def test_forward_stops_at_deepest_layer_and_shapes(caffe_model):
    x = torch.rand(1, 3, 64, 48)
    out = caffe_model(x, ["conv1_1", "conv4_2"], pooling="avg")
    assert set(out) == {"conv1_1", "conv4_2"}
    assert out["conv1_1"].shape == (1, 64, 64, 48)
    assert out["conv4_2"].shape == (1, 512, 8, 6)
    with pytest.raises(ValueError, match="unknown VGG19 layer"):
        caffe_model(x, ["conv9_9"])


def test_pooling_choice_changes_deep_features(caffe_model):
    x = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    a = caffe_model(x, ["conv3_1"], pooling="max")["conv3_1"]
    b = caffe_model(x, ["conv3_1"], pooling="avg")["conv3_1"]
    assert not torch.allclose(a, b)


def test_preprocessing():
    white = torch.ones(1, 3, 1, 1)
    red = torch.zeros(1, 3, 1, 1)
    red[0, 0] = 1.0
    # Caffe: BGR order, 0..255, mean pixel subtracted.
    assert torch.allclose(CAFFE(white).flatten(), torch.tensor([255 - 103.939, 255 - 116.779, 255 - 123.68]))
    assert CAFFE(red).flatten()[2].item() == pytest.approx(255 - 123.68)
    assert torch.allclose(
        TORCHVISION(white).flatten(), (1 - torch.tensor([0.485, 0.456, 0.406])) / torch.tensor([0.229, 0.224, 0.225])
    )


def _state_dict_from(model, style: str) -> dict:
    if style == "ours":
        return {
            f"{name}.{kind}": getattr(conv, kind).detach().clone()
            for name, conv in model.convs.items()
            for kind in ("weight", "bias")
        }
    pairs = zip(vgg._CONVS, vgg._TORCHVISION_INDEX, strict=True)
    return {
        f"features.{i}.{kind}": getattr(model.convs[name], kind).detach().clone()
        for (name, _, _), i in pairs
        for kind in ("weight", "bias")
    }


@pytest.mark.parametrize("style", ["ours", "torchvision"])
def test_user_file_round_trip(tmp_path, caffe_model, style):
    path = tmp_path / "vgg.pth"
    torch.save(_state_dict_from(caffe_model, style), path)
    model = load_vgg19(str(path), preprocess="caffe")
    x = torch.rand(1, 3, 16, 16)
    assert torch.equal(model(x, ["conv2_1"])["conv2_1"], caffe_model(x, ["conv2_1"])["conv2_1"])
    assert load_vgg19(str(path)).preprocess is TORCHVISION  # a user file defaults to torchvision preprocessing


class _Evil:
    def __reduce__(self):
        return (print, ("this must never run",))


def test_user_file_with_code_is_refused(tmp_path):
    path = tmp_path / "evil.pth"
    with open(path, "wb") as f:
        pickle.dump({"conv1_1.weight": _Evil()}, f)
    with pytest.raises(WeightsError, match="not a plain state dict"):
        load_vgg19(str(path))


def test_user_file_errors(tmp_path):
    with pytest.raises(WeightsError, match="does not exist"):
        load_vgg19(str(tmp_path / "missing.pth"))
    partial = tmp_path / "partial.pth"
    torch.save({"features.0.weight": torch.zeros(64, 3, 3, 3)}, partial)
    with pytest.raises(WeightsError, match="lacks features.0.bias"):
        load_vgg19(str(partial))
    wrong = tmp_path / "wrong.pth"
    state = {f"features.{i}.{k}": torch.zeros(1) for i in vgg._TORCHVISION_INDEX for k in ("weight", "bias")}
    torch.save(state, wrong)
    with pytest.raises(WeightsError, match="conv1_1: expected weight"):
        load_vgg19(str(wrong))


def test_torchvision_offline_gives_clear_error(monkeypatch, tmp_path):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    import torchvision.models as tvm

    def no_network(*args, **kwargs):
        raise OSError("network is unreachable")

    monkeypatch.setattr(tvm, "vgg19", no_network)
    with pytest.raises(WeightsError, match="needs internet once"):
        load_vgg19("torchvision")
