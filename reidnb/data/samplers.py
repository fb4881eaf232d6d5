"""Index samplers for the objectives the five papers train with.

All samplers work on plain integer arrays (pids, camids) and a seeded `numpy.random.Generator`, so
they are independent of how images are stored and which pipeline consumes the indices.

- `identity_batches`: P identities x K images (Hermans et al. 2017), for batch-hard triplet
  (li2019) and for the identity-balanced batches of jeong2020 Sec. 4.2.
- `shuffled_batches`: plain shuffled mini-batches (the IDE baseline).
- `pair_indices`: Siamese pairs with a same/different label (verification losses: jeong2020, jamal2020,
  zheng2019).
- `triplet_indices`: anchor / positive / negative triplets (the lakshmi tutorial's APN set).
- `identity_triplet_batches`: batches of P anchors of P distinct identities, each with a positive
  and a negative (jeong2020 Sec. 4.2; the lakshmi tutorial's training batches).
- `split_by_identity`: a train / validation split with disjoint identities.
"""

from __future__ import annotations

import numpy as np


def _groups(pids: np.ndarray) -> dict[int, np.ndarray]:
    order = np.argsort(pids, kind="stable")
    uniq, starts = np.unique(pids[order], return_index=True)
    return {int(p): g for p, g in zip(uniq, np.split(order, starts[1:]))}


def split_by_identity(pids: np.ndarray, val_fraction: float, seed: int = 0
                      ) -> tuple[np.ndarray, np.ndarray]:
    """(train, val) positions with disjoint identities: `val_fraction` of the identities, drawn
    with `seed`, go to validation (at least one, and at least two left for training)."""
    pids = np.asarray(pids)
    ids = np.unique(pids)
    n_val = int(round(val_fraction * len(ids)))
    if not 0 < val_fraction < 1 or n_val < 1 or len(ids) - n_val < 2:
        raise ValueError(f"cannot hold out {val_fraction:.0%} of {len(ids)} identities for "
                         "validation (need >= 1 held out and >= 2 left)")
    val_ids = np.random.default_rng(seed).choice(ids, size=n_val, replace=False)
    is_val = np.isin(pids, val_ids)
    return np.flatnonzero(~is_val), np.flatnonzero(is_val)


def shuffled_batches(n: int, batch_size: int, rng: np.random.Generator,
                     drop_last: bool = True) -> list[np.ndarray]:
    """One epoch of shuffled index batches."""
    perm = rng.permutation(n)
    stop = (n // batch_size) * batch_size if drop_last else n
    return [perm[i:i + batch_size] for i in range(0, stop, batch_size)]


def identity_batches(pids: np.ndarray, num_identities: int, num_instances: int,
                     rng: np.random.Generator) -> list[np.ndarray]:
    """One epoch of P x K batches: every identity appears once per epoch, K images each.

    An identity with fewer than K images is sampled with replacement. The last incomplete group of
    identities is dropped so every batch has exactly P distinct identities.
    """
    groups = _groups(np.asarray(pids))
    if len(groups) < num_identities:
        raise ValueError(f"P x K sampling needs at least P={num_identities} identities, "
                         f"the split has {len(groups)}")
    ids = rng.permutation(np.array(sorted(groups)))
    batches = []
    for start in range(0, len(ids) - num_identities + 1, num_identities):
        chunk = []
        for pid in ids[start:start + num_identities]:
            members = groups[int(pid)]
            replace = len(members) < num_instances
            chunk.append(rng.choice(members, size=num_instances, replace=replace))
        batches.append(np.concatenate(chunk))
    return batches


def _pick_positive(i: int, members: np.ndarray, camids: np.ndarray,
                   rng: np.random.Generator, cross_camera: bool) -> int:
    others = members[members != i]
    if len(others) == 0:
        return i
    if cross_camera:
        other_cam = others[camids[others] != camids[i]]
        if len(other_cam):
            others = other_cam
    return int(rng.choice(others))


def _pick_negative(pid: int, pids: np.ndarray, rng: np.random.Generator) -> int:
    while True:
        j = int(rng.integers(len(pids)))
        if pids[j] != pid:
            return j


def triplet_indices(pids: np.ndarray, camids: np.ndarray, rng: np.random.Generator,
                    anchors: np.ndarray | None = None,
                    cross_camera: bool = True) -> np.ndarray:
    """(N,3) anchor / positive / negative indices.

    The positive is another image of the anchor's identity, from another camera when one exists
    (`cross_camera`); the negative is a uniformly random image of a different identity.
    """
    pids, camids = np.asarray(pids), np.asarray(camids)
    if len(np.unique(pids)) < 2:
        raise ValueError("triplets need at least two identities")
    groups = _groups(pids)
    anchors = np.arange(len(pids)) if anchors is None else np.asarray(anchors)
    out = np.empty((len(anchors), 3), dtype=np.int64)
    for row, a in enumerate(anchors):
        pid = int(pids[a])
        out[row] = (a, _pick_positive(int(a), groups[pid], camids, rng, cross_camera),
                    _pick_negative(pid, pids, rng))
    return out


def identity_triplet_batches(pids: np.ndarray, camids: np.ndarray, num_identities: int,
                             num_anchors: int, rng: np.random.Generator,
                             cross_camera: bool = True) -> list[np.ndarray]:
    """One epoch of (P, 3) anchor / positive / negative index batches whose P anchors are of P
    distinct identities: max(1, num_anchors // P) batches, drawn in rounds in which every
    identity is an anchor once (`identity_batches` with K = 1); positives and negatives as in
    `triplet_indices`. The batches SiameseObjective draws, for the same rng."""
    pids = np.asarray(pids)
    n_batches = max(1, num_anchors // num_identities)
    anchor_batches: list[np.ndarray] = []
    while len(anchor_batches) < n_batches:
        anchor_batches += identity_batches(pids, num_identities, 1, rng)
    anchors = np.concatenate(anchor_batches[:n_batches])
    trip = triplet_indices(pids, camids, rng, anchors=anchors, cross_camera=cross_camera)
    return list(trip.reshape(n_batches, num_identities, 3))


def pair_indices(pids: np.ndarray, camids: np.ndarray, rng: np.random.Generator,
                 anchors: np.ndarray | None = None, pos_fraction: float = 0.5,
                 cross_camera: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Siamese pairs: (first, second, same) with `same`=1 for a positive pair.

    Each anchor gets a positive partner with probability `pos_fraction`, else a negative one.
    """
    trip = triplet_indices(pids, camids, rng, anchors, cross_camera)
    same = (rng.random(len(trip)) < pos_fraction).astype(np.int64)
    second = np.where(same == 1, trip[:, 1], trip[:, 2])
    return trip[:, 0], second, same
