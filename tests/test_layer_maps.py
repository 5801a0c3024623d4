import pytest

from trainables.errors import UserError
from trainables.layer_maps import layer_map, pkd_pairs


def test_reptile_maps_12_to_6_match_the_paper():
    assert layer_map("first", 12, 6) == {j: (j,) for j in range(1, 7)}
    assert layer_map("last", 12, 6) == {j: (j + 6,) for j in range(1, 7)}
    assert layer_map("skip", 12, 6) == {j: (2 * j,) for j in range(1, 7)}
    assert layer_map("both", 12, 6) == {j: (2 * j - 1, 2 * j) for j in range(1, 7)}


@pytest.mark.parametrize("lt,ls,expected", [
    (6, 3, {"first": [1, 2, 3], "last": [4, 5, 6], "skip": [2, 4, 6], "both": [(1, 2), (3, 4), (5, 6)]}),
    (6, 2, {"first": [1, 2], "last": [5, 6], "skip": [3, 6], "both": [(1, 2, 3), (4, 5, 6)]}),
    (4, 2, {"first": [1, 2], "last": [3, 4], "skip": [2, 4], "both": [(1, 2), (3, 4)]}),
])
def test_reptile_maps_other_depths(lt, ls, expected):
    for strategy, layers in expected.items():
        want = {j + 1: (v if isinstance(v, tuple) else (v,)) for j, v in enumerate(layers)}
        assert layer_map(strategy, lt, ls) == want


def test_pkd_pairs_skip_the_last_student_layer():
    assert pkd_pairs("skip", 12, 6) == [(1, 2), (2, 4), (3, 6), (4, 8), (5, 10)]
    assert pkd_pairs("last", 12, 6) == [(1, 7), (2, 8), (3, 9), (4, 10), (5, 11)]
    assert pkd_pairs("skip", 6, 1) == []


def test_bad_maps_are_clear_errors():
    with pytest.raises(UserError, match="'middle'.*first, last, skip, both"):
        layer_map("middle", 12, 6)
    with pytest.raises(UserError, match="multiple"):
        layer_map("skip", 12, 5)
    with pytest.raises(UserError, match="pkd_layer_map"):
        pkd_pairs("first", 12, 6)
