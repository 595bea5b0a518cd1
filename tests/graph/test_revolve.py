"""Binomial checkpointing: every state comes back, last first, from a fixed
number of buffers, with each step evaluated a bounded number of times."""
from math import comb

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from graphsparse.graph._revolve import reversed_states, spine, split


def _reverse(length, slots, use_spine):
    """Runs the reverse pass on a counter state; returns the yielded steps
    and how often each step was evaluated (forward sweep included)."""
    evaluations = [1] * length                      # the forward sweep

    def advance(state, steps):
        k = int(state.item())
        for i in range(steps):
            evaluations[k + i] += 1
        state.add_(steps)

    buffers = [torch.full((1,), -1.0) for _ in range(slots)]
    stored = {}
    if use_spine:
        for k in spine(length, slots + 1):
            stored[k] = buffers.pop().fill_(k)      # as the forward pass stores them
    seen, states = [], []
    for k, state in reversed_states(length, torch.zeros(1), buffers, stored, torch.zeros(1),
                                    advance):
        seen.append(k)
        states.append(int(state.item()))
        evaluations[k] += 1                         # the step itself, for its degrees
    return seen, states, evaluations


@settings(max_examples=60, deadline=None)
@given(length=st.integers(1, 120), slots=st.integers(1, 8), use_spine=st.booleans())
def test_every_state_comes_back_in_reverse_with_bounded_evaluations(length, slots, use_spine):
    seen, states, evaluations = _reverse(length, slots, use_spine)
    assert seen == list(range(length - 1, -1, -1))
    assert states == seen                           # the state before step k is k
    # beta(s, r) = C(s + r, s) steps take at most r evaluations each in
    # revolve; the forward sweep and the degrees' evaluation add at most 2
    r = 1
    while comb(slots + 1 + r, slots + 1) < length:
        r += 1
    assert max(evaluations) <= r + 2


def test_spine_never_holds_more_than_the_slots():
    for length in range(1, 200):
        for states in range(1, 10):
            points = spine(length, states)
            assert len(points) <= states - 1
            assert points == sorted(set(points)) and all(0 < k < length for k in points)


@pytest.mark.parametrize("length,states", [(1, 5), (7, 1), (0, 3)])
def test_nothing_to_split(length, states):
    assert split(length, states) is None


def test_one_sweep_when_every_state_fits():
    # as many slots as steps: the forward sweep stores them all, no recomputation
    _, _, evaluations = _reverse(10, 9, use_spine=True)
    assert evaluations == [2] * 10
