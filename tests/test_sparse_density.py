"""Per-layer densities and exact counts: uniform and ERK, checked against hand computations."""

from __future__ import annotations

import math

import pytest

from cldst.errors import ConfigError
from cldst.sparse import INITS, density_table, layer_counts, layer_densities

# A hand-built net: conv (16,3,3,3) = 432 weights, conv (32,16,3,3) = 4608, linear (10,32) = 320; 5360 in all.
NET = {"conv1": (16, 3, 3, 3), "conv2": (32, 16, 3, 3), "fc": (10, 32)}
# ERK gives layer l  eps * sum(shape_l) ones (score * numel = sum of dims): conv1 25, conv2 54, fc 42 per eps.

# CIFAR ResNet-18, width 64, the authors' 7x7 stride-2 stem, 100-way head: 21 maskable weights.
RESNET18 = [
    ("conv1", (64, 3, 7, 7)),
    ("layer1.0.conv1", (64, 64, 3, 3)),
    ("layer1.0.conv2", (64, 64, 3, 3)),
    ("layer1.1.conv1", (64, 64, 3, 3)),
    ("layer1.1.conv2", (64, 64, 3, 3)),
    ("layer2.0.conv1", (128, 64, 3, 3)),
    ("layer2.0.conv2", (128, 128, 3, 3)),
    ("layer2.0.shortcut", (128, 64, 1, 1)),
    ("layer2.1.conv1", (128, 128, 3, 3)),
    ("layer2.1.conv2", (128, 128, 3, 3)),
    ("layer3.0.conv1", (256, 128, 3, 3)),
    ("layer3.0.conv2", (256, 256, 3, 3)),
    ("layer3.0.shortcut", (256, 128, 1, 1)),
    ("layer3.1.conv1", (256, 256, 3, 3)),
    ("layer3.1.conv2", (256, 256, 3, 3)),
    ("layer4.0.conv1", (512, 256, 3, 3)),
    ("layer4.0.conv2", (512, 512, 3, 3)),
    ("layer4.0.shortcut", (512, 256, 1, 1)),
    ("layer4.1.conv1", (512, 512, 3, 3)),
    ("layer4.1.conv2", (512, 512, 3, 3)),
    ("linear", (100, 512)),
]


def total(shapes) -> int:
    return sum(math.prod(s) for s in shapes.values())


@pytest.mark.parametrize(
    "density, expected",
    [
        (0.05, {"conv1": 22, "conv2": 230, "fc": 16}),  # 21.6, 230.4, 16.0
        (0.1, {"conv1": 43, "conv2": 461, "fc": 32}),  # 43.2, 460.8, 32.0
        (0.2, {"conv1": 86, "conv2": 922, "fc": 64}),  # 86.4, 921.6, 64.0
    ],
)
def test_uniform_counts(density, expected):
    assert layer_densities(NET, density, "uniform") == {name: density for name in NET}
    assert layer_counts(NET, density, "uniform") == expected


@pytest.mark.parametrize(
    "density, expected",
    [
        # budget 268, eps = 268/121 (25+54+42): 55.37, 119.60, 93.02; fc density 0.29 <= 1
        (0.05, {"conv1": 55, "conv2": 120, "fc": 93}),
        # budget 536, eps = 536/121: 110.74, 239.21, 186.05
        (0.1, {"conv1": 111, "conv2": 239, "fc": 186}),
        # budget 1072, eps = 1072/121 = 8.86 gives fc 372.1 > 320 ones: fc dense (320),
        # then eps = (1072-320)/79 = 752/79: conv1 237.97, conv2 514.03
        (0.2, {"conv1": 238, "conv2": 514, "fc": 320}),
        # two rounds: eps = 1876/121 makes only fc dense (conv1 387.6 <= 432); eps = 1556/79 = 19.70
        # then gives conv1 492.4 > 432: dense too; conv2 gets the rest 1556 - 432 = 1124
        (0.35, {"conv1": 432, "conv2": 1124, "fc": 320}),
    ],
)
def test_erk_counts_by_hand(density, expected):
    counts = layer_counts(NET, density, "ERK")
    assert counts == expected
    assert abs(sum(counts.values()) - density * total(NET)) < len(NET)


def test_erk_densities_scale_the_remaining_layers_by_one_epsilon():
    densities = layer_densities(NET, 0.2, "ERK")
    eps = 752 / 79
    assert densities["fc"] == 1.0
    assert densities["conv1"] == pytest.approx(eps * 25 / 432, rel=1e-12)
    assert densities["conv2"] == pytest.approx(eps * 54 / 4608, rel=1e-12)


def test_density_one_is_dense_everywhere():
    for init in INITS:
        assert layer_counts(NET, 1.0, init) == {name: math.prod(s) for name, s in NET.items()}


def test_rounding_is_half_to_even():
    # 0.5 * 5 = 2.5 -> 2, 0.5 * 7 = 3.5 -> 4 (Python's round)
    assert layer_counts({"a": (5,), "b": (7,)}, 0.5, "uniform") == {"a": 2, "b": 4}


def test_erk_on_resnet18_makes_stem_shortcuts_and_head_dense_at_density_0_2():
    shapes = dict(RESNET18)
    table = density_table(shapes, 0.2, "ERK")
    assert list(table.columns) == ["layer", "shape", "numel", "density", "count", "dense"]
    assert table["layer"].tolist() == [name for name, _ in RESNET18]
    assert table.loc[table["dense"], "layer"].tolist() == [
        "conv1", "layer2.0.shortcut", "layer3.0.shortcut", "layer4.0.shortcut", "linear",
    ]
    assert table["count"].tolist() == [
        9408, 36773, 36773, 36773, 36773, 54336, 71899, 8192, 71899, 71899, 107026,
        142152, 32768, 142152, 142152, 212405, 282657, 131072, 282657, 282657, 51200,
    ]
    assert table["numel"].sum() == 11_218_112
    assert table["count"].sum() == 2_243_623  # 0.2 * total = 2243622.4
    assert table["shape"][0] == (64, 3, 7, 7)


@pytest.mark.parametrize(
    "density, dense",
    [
        (0.1, ["conv1", "layer2.0.shortcut", "layer3.0.shortcut", "linear"]),
        (0.05, ["layer2.0.shortcut"]),
    ],
)
def test_erk_on_resnet18_dense_layers_at_lower_densities(density, dense):
    table = density_table(dict(RESNET18), density, "ERK")
    assert table.loc[table["dense"], "layer"].tolist() == dense
    assert abs(table["count"].sum() - density * table["numel"].sum()) < len(RESNET18)


def test_uniform_on_resnet18_has_no_dense_layer():
    table = density_table(dict(RESNET18), 0.2, "uniform")
    assert not table["dense"].any()
    assert table["count"].tolist()[0] == 1882  # round(0.2 * 9408 = 1881.6)


def test_init_names():
    assert layer_counts(NET, 0.1, "erk") == layer_counts(NET, 0.1, "ERK")
    assert layer_counts(NET, 0.1, "Uniform") == layer_counts(NET, 0.1, "uniform")
    with pytest.raises(ConfigError, match=r"^sparse_init='random' is not one of: uniform, ERK$"):
        layer_densities(NET, 0.1, "random")


@pytest.mark.parametrize("density", [0.0, -0.1, 1.5, float("nan"), "0.1", True])
def test_bad_density(density):
    with pytest.raises(ConfigError, match=r"^density=.* must be in \(0, 1\]"):
        layer_counts(NET, density, "ERK")


def test_empty_or_degenerate_shapes():
    with pytest.raises(ValueError, match="empty"):
        layer_counts({}, 0.1, "ERK")
    with pytest.raises(ValueError, match="no weights"):
        layer_counts({"a": (0, 3)}, 0.1, "ERK")
