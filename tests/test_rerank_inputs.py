"""re_ranking takes the distance matrices in whatever form a user holds them (issue 18, item 4).

numpy float32/float64, C- or F-ordered, views of one joined (N, N) matrix (also with strides in
both directions), read-only arrays, integers, torch tensors contiguous or not: every form gives
the result of float32 C-contiguous blocks (to 1e-4; in fact the same bits, see
reidnb/metrics/rerank.py), leaves its inputs as they were, and a wrong shape or dtype is
refused with a message that names what was expected. Small sizes: speed is measured by
benchmarks/bench_eval.py, not here.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from reidnb.metrics import re_ranking
from reidnb.metrics import rerank

NQ, NG = 37, 263  # enough items for the grouped gallery search (groups of 2 at k1 = 20)


def _joined(seed: int = 0, ties: bool = False) -> np.ndarray:
    """A joined (N, N) float32 distance matrix, queries first; asymmetric, so that a block
    read transposed by mistake shows."""
    rng = np.random.default_rng(seed)
    n = NQ + NG
    if ties:
        return rng.integers(1, 12, size=(n, n)).astype(np.float32)
    ids = rng.integers(0, 30, n)
    feats = rng.normal(size=(30, 8))[ids] + 0.6 * rng.normal(size=(n, 8))
    d = np.sqrt(((feats[:, None] - feats[None]) ** 2).sum(-1))
    return (d * (1 + 0.05 * rng.random((n, n)))).astype(np.float32)


def _blocks(big, nq: int = NQ):
    return big[:nq, nq:], big[:nq, :nq], big[nq:, nq:]


def _torch_t(x: np.ndarray, dtype) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(x.T, dtype=dtype)).T  # non-contiguous


def _read_only(x: np.ndarray) -> np.ndarray:
    x = np.array(x)
    x.flags.writeable = False
    return x


def _every_other(big: np.ndarray, dtype) -> np.ndarray:
    """big at the even rows and columns of a twice larger matrix: strides in both directions."""
    n = big.shape[0]
    spread = np.zeros((2 * n, 2 * n), dtype=dtype)
    spread[::2, ::2] = big
    return spread[::2, ::2]


FORMS = {
    "numpy float32 C": lambda big: tuple(np.ascontiguousarray(x) for x in _blocks(big)),
    "numpy float32 views": lambda big: _blocks(big),
    "numpy float32 F": lambda big: tuple(np.asfortranarray(x) for x in _blocks(big)),
    "numpy float64 C": lambda big: tuple(np.ascontiguousarray(x, np.float64) for x in _blocks(big)),
    "numpy float64 views": lambda big: _blocks(big.astype(np.float64)),
    "numpy float64 F": lambda big: tuple(np.asfortranarray(x, np.float64) for x in _blocks(big)),
    "numpy float64 strided views": lambda big: _blocks(_every_other(big, np.float64)),
    "numpy float32 views of an F-ordered matrix": lambda big: _blocks(np.asfortranarray(big)),
    "numpy float64 read-only": lambda big: tuple(_read_only(x.astype(np.float64))
                                                 for x in _blocks(big)),
    "numpy mixed float32/float64": lambda big: (
        _blocks(big)[0].astype(np.float64), *_blocks(big)[1:]),
    "torch float32 contiguous": lambda big: tuple(torch.from_numpy(np.ascontiguousarray(x))
                                                  for x in _blocks(big)),
    "torch float32 views": lambda big: _blocks(torch.from_numpy(big)),
    "torch float32 transposed": lambda big: tuple(_torch_t(x, np.float32) for x in _blocks(big)),
    "torch float64 contiguous": lambda big: tuple(
        torch.from_numpy(np.ascontiguousarray(x, np.float64)) for x in _blocks(big)),
    "torch float64 views": lambda big: _blocks(torch.from_numpy(big.astype(np.float64))),
    "torch float64 transposed": lambda big: tuple(_torch_t(x, np.float64) for x in _blocks(big)),
}


def _baseline(big: np.ndarray, **kw) -> np.ndarray:
    return re_ranking(*FORMS["numpy float32 C"](big), **kw)


def _as_numpy(x) -> np.ndarray:
    return x.numpy() if isinstance(x, torch.Tensor) else x


def _snapshot(inputs) -> list[np.ndarray]:
    return [np.array(_as_numpy(x), copy=True) for x in inputs]


@pytest.mark.parametrize("form", list(FORMS))
def test_every_input_form_gives_the_float32_contiguous_result(form):
    big = _joined(0)
    want = _baseline(big)
    inputs = FORMS[form](big)
    before = _snapshot(inputs)
    got = re_ranking(*inputs)
    assert isinstance(got, torch.Tensor) == form.startswith("torch"), "output type follows input"
    got = _as_numpy(got)
    assert got.dtype == np.float32 and got.shape == (NQ, NG)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-4, err_msg=f"{form}: differs")
    for x, old in zip(inputs, before):
        np.testing.assert_array_equal(_as_numpy(x), old, err_msg=f"{form}: input modified")
    if form == "numpy float64 read-only":
        assert not any(x.flags.writeable for x in inputs)


@pytest.mark.parametrize("form", ["numpy float32 views", "numpy float64 F",
                                  "numpy float64 strided views", "torch float64 transposed"])
def test_input_forms_agree_with_ties_and_tiny_working_blocks(form, monkeypatch):
    # equal distances exercise the tie fallbacks; tiny blocks the band loops (one row or
    # column per band, partial groups at the block ends)
    big = _joined(3, ties=True)
    want = _baseline(big, k1=8, k2=4)
    got = _as_numpy(re_ranking(*FORMS[form](big), k1=8, k2=4))
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-4)
    monkeypatch.setattr(rerank, "_ROW_ELEMENTS", 200)
    monkeypatch.setattr(rerank, "_OVERLAP_CELLS", 100)
    monkeypatch.setattr(rerank, "_TRANSPOSE_BAND", 3)
    monkeypatch.setattr(rerank, "_BAND_CELLS", 1)
    pieces = _as_numpy(re_ranking(*FORMS[form](big), k1=8, k2=4))
    np.testing.assert_allclose(pieces, want, rtol=0, atol=1e-4)


@pytest.mark.parametrize("layout", ["C", "F", "views"])
def test_scan_gives_column_scales_and_group_minima_of_squares(layout, monkeypatch):
    monkeypatch.setattr(rerank, "_BAND_CELLS", 1000)  # several bands, not a multiple of group
    big = _joined(5).astype(np.float64)
    big[3, 7] *= -1  # only squares count
    parts = _blocks(big)
    if layout == "C":
        parts = tuple(np.ascontiguousarray(x) for x in parts)
    elif layout == "F":
        parts = tuple(np.asfortranarray(x) for x in parts)
    blocks = rerank._Blocks(*(torch.from_numpy(x) for x in parts))
    group = 5  # NQ = 37 and NG = 263 leave partial groups
    col_max, mins = rerank._scan(blocks, group)
    q_g, q_q, g_g = _blocks(big)
    joined = np.block([[q_q, q_g], [q_g.T, g_g]])  # D as re-ranking joins it (q_g.T below)
    sq = (joined * joined).astype(np.float32)
    np.testing.assert_array_equal(col_max.numpy(), sq.max(axis=0))
    want = [sq[a : min(a + group, NQ), NQ:].min(axis=0) for a in range(0, NQ, group)]
    want += [sq[NQ + a : NQ + min(a + group, NG), NQ:].min(axis=0) for a in range(0, NG, group)]
    np.testing.assert_array_equal(mins.numpy(), np.stack(want))


def test_float32_and_float64_of_the_same_distances_agree():
    big = _joined(1)
    got32 = re_ranking(*_blocks(big))
    got64 = re_ranking(*_blocks(big.astype(np.float64)))
    np.testing.assert_allclose(got64, got32, rtol=0, atol=1e-4)


def test_wrong_shapes_are_refused_naming_what_was_expected():
    q_g, q_q, g_g = _blocks(_joined(2))
    with pytest.raises(ValueError, match=r"q_g_dist: expected a 2-D \(query, gallery\) matrix"):
        re_ranking(q_g[0], q_q, g_g)
    with pytest.raises(ValueError, match=rf"expected q_q_dist \({NQ}, {NQ}\) and g_g_dist "
                                         rf"\({NG}, {NG}\) to match q_g_dist \({NQ}, {NG}\)"):
        re_ranking(q_g, q_q[:, :-1], g_g)
    with pytest.raises(ValueError, match="g_g_dist"):
        re_ranking(q_g, q_q, g_g[:-1])
    with pytest.raises(ValueError, match="q_q_dist"):  # q_g passed where q_q belongs
        re_ranking(q_g, q_g, g_g)


@pytest.mark.parametrize("bad", [
    lambda x: x.astype(np.complex128),
    lambda x: x > 1,
    lambda x: x.astype(str),
    lambda x: x.astype(object),
    lambda x: torch.from_numpy(x).to(torch.complex64),
    lambda x: torch.from_numpy(x > 1),
], ids=["complex", "bool", "str", "object", "torch complex", "torch bool"])
def test_wrong_dtypes_are_refused_naming_what_was_expected(bad):
    q_g, q_q, g_g = _blocks(_joined(2))
    with pytest.raises(ValueError, match=r"g_g_dist: expected real distances \(float32 fastest; "
                                         r"float64, float16 or integers also taken\), got dtype"):
        re_ranking(q_g, q_q, bad(np.ascontiguousarray(g_g)))


def test_float16_distances_give_the_same_result_in_every_layout():
    # float16 distances are other numbers (rounded to 11 bits, squared in float16 as the
    # authors' numpy code would): compared with themselves, C-contiguous
    big = _joined(0).astype(np.float16)
    want = re_ranking(*(np.ascontiguousarray(x) for x in _blocks(big)))
    for form in (_blocks(big), tuple(np.asfortranarray(x) for x in _blocks(big)),
                 _blocks(torch.from_numpy(big))):
        np.testing.assert_allclose(_as_numpy(re_ranking(*form)), want, rtol=0, atol=1e-4)


def test_integer_and_big_endian_distances_are_taken():
    big = np.round(_joined(4) * 100)
    want = _baseline(big.astype(np.float32))
    for form in (big.astype(np.int64), big.astype(">f8"), big.astype(np.uint16)):
        got = re_ranking(*_blocks(form))
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-4)


def test_non_finite_and_overflowing_distances_name_their_block():
    big = _joined(6).astype(np.float64)
    nan = big.copy()
    nan[3, NQ + 5] = np.nan  # in q_g
    with pytest.raises(ValueError, match="q_g_dist: contains NaN or infinite values"):
        re_ranking(*_blocks(nan))
    inf = big.copy()
    inf[NQ + 3, NQ + 5] = np.inf
    with pytest.raises(ValueError, match="g_g_dist: contains NaN or infinite values"):
        re_ranking(*_blocks(inf))
    with pytest.raises(ValueError, match=r"q_q_dist: distances up to 1e\+20 overflow float32 "
                                         r"when squared"):
        huge = big.copy()
        huge[1, 2] = 1e20
        re_ranking(*_blocks(huge))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_views_give_the_cpu_result():
    big = _joined(0)
    want = _baseline(big)
    got = re_ranking(*_blocks(torch.from_numpy(big.astype(np.float64)).cuda()))
    assert got.is_cuda
    np.testing.assert_allclose(got.cpu().numpy(), want, rtol=0, atol=1e-4)
