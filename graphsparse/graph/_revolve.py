r"""Binomial checkpointing (Griewank 1992, "revolve"): the reverse pass of
``K`` steps of a map with a fixed number of stored states.

With ``s`` states in memory (the start of the part being reversed among
them) and every step evaluated at most ``r`` times, the longest chain that
can be reversed is :math:`\beta(s, r) = \binom{s + r}{s}`, and
:math:`\beta(s, r) = \beta(s, r - 1) + \beta(s - 1, r)` gives the schedule:
advance to a checkpoint, reverse the part after it with one state fewer,
then the part before it with one evaluation fewer. Memory is ``s`` states
whatever ``K``; the evaluations grow as :math:`r K` with
:math:`r \approx (s!\, K)^{1/s}`.
"""
from __future__ import annotations

from math import comb
from typing import Callable, Dict, Iterator, List, Optional, Tuple

from torch import Tensor


def split(length: int, states: int) -> Optional[int]:
    """Offset of the next checkpoint when ``length`` steps are reversed from
    a start state with ``states`` states in memory (the start included);
    ``None`` when there is nothing to split (one step, or no state to spare:
    every step is then recomputed from the start)."""
    if length <= 1 or states <= 1:
        return None
    r = 1
    while comb(states + r, states) < length:
        r += 1
    # the part after the checkpoint must be reversible with one state fewer
    # and r evaluations, the part before it with r - 1 (it has been swept
    # once): the middle of that range (counted for K <= 100 and up to 10
    # states: as few evaluations as either end of it or fewer, but for 3%)
    longest = min(length - 1, comb(states - 1 + r, states - 1))
    shortest = max(1, length - comb(states + r - 1, states))
    return length - (longest + shortest) // 2


def spine(length: int, states: int) -> List[int]:
    """The checkpoints of the first forward sweep: where the reverse pass
    asks for a state before it has computed one (so a forward pass that
    stores them saves a sweep)."""
    out: List[int] = []
    k = 0
    while True:
        m = split(length - k, states - len(out))
        if m is None:
            return out
        k += m
        out.append(k)


def reversed_states(length: int, start: Tensor, slots: List[Tensor], stored: Dict[int, Tensor],
                    work: Tensor, advance: Callable[[Tensor, int], None]
                    ) -> Iterator[Tuple[int, Tensor]]:
    """Yields ``(k, state before step k)`` for ``k = length - 1, ..., 0``.

    Args:
        length: the number of steps ``K``.
        start: the state before step 0 (read only).
        slots: free state buffers; with ``stored`` they are the
            ``states - 1`` states besides ``start``.
        stored: states at the :func:`spine` steps, kept by the forward pass
            (taken over: their buffers are reused).
        work: a buffer for the yielded state, valid until the next one.
        advance: ``advance(state, n)`` runs ``n`` steps on ``state`` in place.
    """
    yield from _reverse(0, length, start, 1 + len(slots) + len(stored), slots, stored, work,
                        advance)


def _reverse(k0: int, length: int, base: Tensor, states: int, slots: List[Tensor],
             stored: Dict[int, Tensor], work: Tensor,
             advance: Callable[[Tensor, int], None]) -> Iterator[Tuple[int, Tensor]]:
    while length > 0:
        m = split(length, states)
        if m is None:
            work.copy_(base)
            advance(work, length - 1)
            yield k0 + length - 1, work
            length -= 1
            continue
        slot = stored.pop(k0 + m, None)
        if slot is None:
            slot = slots.pop()
            slot.copy_(base)
            advance(slot, m)
        yield from _reverse(k0 + m, length - m, slot, states - 1, slots, stored, work, advance)
        slots.append(slot)
        length = m
