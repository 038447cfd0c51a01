"""Parameter validation: every bad value is refused with its field named."""

import pytest

from stylelayer.core.params import ParamError, StyleParams


def test_defaults_follow_the_paper():
    p = StyleParams()
    assert p.content_layer == "conv4_2"
    assert p.style_layers == ("conv1_1", "conv2_1", "conv3_1", "conv4_1", "conv5_1")
    assert p.layer_weights == {name: 0.2 for name in p.style_layers}
    assert p.content_weight / p.style_weight == pytest.approx(1e-4)
    assert p.optimizer == "lbfgs"


def test_round_trip_and_string_forms():
    p = StyleParams.from_dict(
        {
            "style_blend": "1,3",
            "style_layers": "conv1_1,conv3_1",
            "output_size": "64x32",
            "preserve_colors": "true",
            "iterations": "12",
            "mode": "texture",
        }
    )
    assert p.style_blend == (1.0, 3.0) and p.blend_weights(2) == [0.25, 0.75]
    assert p.style_layers == ("conv1_1", "conv3_1") and p.output_size == (64, 32)
    assert p.preserve_colors is True and p.iterations == 12
    assert StyleParams.from_dict(p.to_dict()) == p


def test_modes_set_the_weights():
    assert StyleParams(mode="inversion").effective_style_weight == 0
    assert StyleParams(mode="texture").effective_content_weight == 0
    assert StyleParams(optimizer="adam").effective_lr == 0.02


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("iterations", 0),
        ("iterations", 2.5),
        ("iterations", "many"),
        ("iterations", True),
        ("size", -1),
        ("size", 100000),
        ("style_weight", -1.0),
        ("style_weight", float("nan")),
        ("content_weight", float("inf")),
        ("optimizer", "sgd"),
        ("init", 3),
        ("pooling", "min"),
        ("style_scale", 0),
        ("style_blend", []),
        ("style_blend", [0, 0]),
        ("style_layers", ["conv9_1"]),
        ("style_layers", ["conv1_1", "conv1_1"]),
        ("style_layer_weights", [1.0]),
        ("content_layer", "fc7"),
        ("preserve_colors", "perhaps"),
        ("seed", -5),
        ("output_size", "8x8"),
        ("output_size", [1, 2, 3]),
        ("mode", "dream"),
        ("precision", "fp8"),
        ("lr", 0),
        ("scales", 9),
        ("nonsense", 1),
    ],
)
def test_bad_values_name_their_field(field, value):
    with pytest.raises(ParamError) as info:
        StyleParams.from_dict({field: value})
    assert info.value.field == field
    assert str(info.value).startswith(f"{field}: ")


def test_nothing_to_optimise_and_non_mapping():
    with pytest.raises(ParamError, match="both 0"):
        StyleParams.from_dict({"content_weight": 0, "style_weight": 0})
    with pytest.raises(ParamError, match="JSON object"):
        StyleParams.from_dict([1, 2])  # type: ignore[arg-type]


def test_from_json_takes_json_types_only():
    """The server's parser: the command line's string forms are refused, real JSON values pass unchanged."""
    p = StyleParams.from_json(
        {
            "size": 64,
            "style_weight": 5,
            "preserve_colors": True,
            "style_blend": [1, 2.5],
            "output_size": [64, 32],
            "mode": "texture",
            "lr": None,
            "seed": None,
        }
    )
    assert (p.size, p.style_weight, p.preserve_colors, p.style_blend, p.output_size) == (
        64,
        5.0,
        True,
        (1, 2.5),
        (64, 32),
    )
    for field, value in [
        ("size", "64"),
        ("size", 64.0),
        ("iterations", 1e2),
        ("preserve_colors", "yes"),
        ("preserve_colors", 1),
        ("style_weight", "1e4"),
        ("style_weight", True),
        ("style_blend", "1,3"),
        ("style_blend", ["1", 3]),
        ("output_size", "64x32"),
        ("output_size", [64.0, 32]),
        ("style_layers", "conv1_1"),
        ("mode", 3),
    ]:
        with pytest.raises(ParamError) as info:
            StyleParams.from_json({field: value})
        assert info.value.field == field and "must be" in str(info.value)


def test_integers_are_exact_beyond_float_precision():
    seed = 2**63 - 1  # the largest seed; as a float it would round to 2**63 and fail the range check
    assert StyleParams.from_json({"seed": seed}).seed == seed
    assert StyleParams.from_dict({"seed": 2**53 + 1}).seed == 2**53 + 1
    with pytest.raises(ParamError, match="between"):
        StyleParams.from_json({"seed": 2**63})
