import numpy as np
import pytest

from reidnb.data.samplers import (identity_batches, identity_triplet_batches, pair_indices,
                                  shuffled_batches, triplet_indices)

PIDS = np.array([0, 0, 0, 1, 1, 2, 2, 2, 2, 3, 4, 4])
CAMS = np.array([0, 1, 1, 0, 0, 0, 1, 2, 2, 1, 0, 3])


def test_identity_batches_have_p_distinct_ids_k_each():
    batches = identity_batches(PIDS, num_identities=2, num_instances=3,
                               rng=np.random.default_rng(0))
    assert len(batches) == 2  # 5 identities // P=2
    for b in batches:
        ids, counts = np.unique(PIDS[b], return_counts=True)
        assert len(ids) == 2 and (counts == 3).all()
    seen = np.concatenate([np.unique(PIDS[b]) for b in batches])
    assert len(seen) == len(set(seen.tolist()))  # no identity twice in an epoch


def test_identity_batches_too_few_ids_raises():
    with pytest.raises(ValueError, match="at least P=9"):
        identity_batches(PIDS, 9, 2, np.random.default_rng(0))


def test_identity_batches_deterministic_for_seed():
    a = identity_batches(PIDS, 2, 2, np.random.default_rng(3))
    b = identity_batches(PIDS, 2, 2, np.random.default_rng(3))
    assert all((x == y).all() for x, y in zip(a, b))


def test_shuffled_batches_cover_each_index_once():
    batches = shuffled_batches(10, 3, np.random.default_rng(0), drop_last=False)
    assert sorted(np.concatenate(batches).tolist()) == list(range(10))
    assert [len(b) for b in shuffled_batches(10, 3, np.random.default_rng(0))] == [3, 3, 3]


def test_triplets_positive_same_id_other_camera_negative_other_id():
    trip = triplet_indices(PIDS, CAMS, np.random.default_rng(0))
    a, p, n = trip.T
    assert (PIDS[a] == PIDS[p]).all() and (PIDS[a] != PIDS[n]).all()
    # anchor 0 (pid 0, cam 0): the other images of pid 0 are in cam 1 -> positive from cam 1
    assert CAMS[p[0]] == 1
    # pid 3 has a single image: its positive is itself
    assert p[9] == 9
    # when a cross-camera positive exists it is chosen
    for i in range(len(PIDS)):
        others = [j for j in range(len(PIDS)) if PIDS[j] == PIDS[i] and CAMS[j] != CAMS[i]]
        if others:
            assert p[i] in others


def test_pairs_label_matches_identity():
    first, second, same = pair_indices(PIDS, CAMS, np.random.default_rng(1), pos_fraction=0.5)
    assert ((PIDS[first] == PIDS[second]) == (same == 1)).all()
    assert set(same.tolist()) == {0, 1}


def test_split_by_identity_is_disjoint_and_seeded():
    from reidnb.data.samplers import split_by_identity

    pids = np.repeat(np.arange(10), 3)
    tr, va = split_by_identity(pids, 0.2, seed=1)
    assert len(set(pids[tr]) & set(pids[va])) == 0 and len(set(pids[va])) == 2
    assert sorted(np.concatenate([tr, va]).tolist()) == list(range(30))
    tr2, va2 = split_by_identity(pids, 0.2, seed=1)
    assert np.array_equal(va, va2)
    assert not np.array_equal(va, split_by_identity(pids, 0.2, seed=2)[1])
    with pytest.raises(ValueError, match="cannot hold out"):
        split_by_identity(np.array([0, 0, 1, 1]), 0.9)


def test_identity_triplet_batches_have_p_identities_each_with_a_positive_and_a_negative():
    batches = identity_triplet_batches(PIDS, CAMS, num_identities=3, num_anchors=10,
                                       rng=np.random.default_rng(0))
    assert len(batches) == 3 and all(b.shape == (3, 3) for b in batches)  # 10 // P=3
    for b in batches:
        a, p, n = b.T
        assert len(set(PIDS[a].tolist())) == 3              # P distinct anchor identities
        assert (PIDS[p] == PIDS[a]).all() and (PIDS[n] != PIDS[a]).all()
        has_other_cam = np.array([(CAMS[PIDS == PIDS[i]] != CAMS[i]).any() for i in a])
        assert (CAMS[p][has_other_cam] != CAMS[a][has_other_cam]).all()


def test_identity_triplet_batches_are_the_siamese_objectives_batches():
    from reidnb.train.objectives import SiameseObjective
    from tiny_model import random_cache

    cache = random_cache(n_ids=7, per_id=3)
    obj = SiameseObjective(cache, num_identities=3, anchors_per_epoch=12)
    ours = identity_triplet_batches(cache.pids.numpy(), cache.camids.numpy(), 3, 12,
                                    np.random.default_rng(5))
    theirs = obj.epoch_batches(np.random.default_rng(5))
    assert len(ours) == len(theirs) == 4
    assert all((x == y).all() for x, y in zip(ours, theirs))
