"""Route coordinates are rounded over arrays (api._routing._round_like_python) to exactly the digits
Python's round gives, halves and near-halves included."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from api._routing import _pairs, _round_like_python


def test_arrays_round_like_python_on_halves_and_their_neighbours() -> None:
    rng = np.random.default_rng(7)
    k = rng.integers(-1_800_000_000, 1_800_000_000, 50_000)
    halves = (k + 0.5) / 1e7
    values = np.concatenate(
        [halves, np.nextafter(halves, 0), np.nextafter(halves, np.inf), rng.uniform(-180, 180, 50_000)]
    )
    for nd in (6, 7, 9):
        got = _round_like_python(values, nd)
        want = np.array([round(v, nd) for v in values.tolist()])
        assert np.array_equal(got.view(np.int64), want.view(np.int64)), nd  # bit for bit, zeros' signs too


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.floats(-180, 180), st.floats(-90, 90)), max_size=50), st.integers(0, 9))
def test_pairs_are_pythons_round(points: list[tuple[float, float]], nd: int) -> None:
    a = np.array([p[0] for p in points], np.float64)
    b = np.array([p[1] for p in points], np.float64)
    assert _pairs(a, b, nd) == [[round(x, nd), round(y, nd)] for x, y in points]
