"""Position shifting: seeded permutations of candidates and history.

LLMs favour some positions of a list (the first candidate, the last history item). RecRanker
shuffles positions in training so the position carries no information; at test time a prompt
can be emitted in several seeded permutations whose answers the rank stage aggregates.

Every random choice takes its own generator seeded by ``(seed, purpose, user, ...)``
(:func:`rng_for`): results do not depend on processing order, and the random choices of one
instruction do not move when anything else (e.g. other users' ratings) changes.
"""

from __future__ import annotations

import numpy as np

# Purpose keys of rng_for (stable: changing them changes every output).
FOLDS, TRAIN, TEST_HISTORY, TEST_CANDIDATES, NEVER = 1, 2, 3, 4, 5


def rng_for(seed: int, *keys: int) -> np.random.Generator:
    """An independent generator for one purpose/entity (all keys non-negative ints)."""
    return np.random.default_rng([int(seed) & 0xFFFFFFFF, *map(int, keys)])


def permutation(n: int, rng: np.random.Generator, shuffle: bool = True) -> np.ndarray:
    """A random permutation of ``range(n)``, or the identity when ``shuffle`` is off."""
    return rng.permutation(n) if shuffle else np.arange(n)


def test_candidate_order(seed: int, user: int, perm: int, n: int, shuffle: bool = True) -> np.ndarray:
    """Shown order (indices into the backbone's ranking) of permutation ``perm`` of a user; the
    backbone's own order when position shifting is off (the "w/o position shifting" ablation).

    Independent of the backbone, so backbones with equal candidates get equal prompts.
    """
    return permutation(n, rng_for(seed, TEST_CANDIDATES, user, perm), shuffle)


def test_history_order(seed: int, user: int, perm: int, n: int, shuffle: bool) -> np.ndarray:
    """History order of permutation ``perm`` (chronological unless history shuffling is on)."""
    return permutation(n, rng_for(seed, TEST_HISTORY, user, perm), shuffle)
