"""k-reciprocal re-ranking (Zhong, Zheng, Cao, Li: "Re-ranking person re-identification with
k-reciprocal encoding", CVPR 2017), giving the numbers of the authors' public numpy code.

What that code does, step by step (all items = queries then gallery, N of them):

1. Join the three distance blocks into the N x N matrix D, square it (in the input precision),
   cast to float32, divide every column by its maximum and transpose: ``M[i, j] = D[j, i]**2 /
   max_k D[k, i]**2``. Row i of M ranks all items for item i.
2. R(i, k) = the k-reciprocal neighbours of i: items j among the k + 1 nearest of i (i itself
   included) that also have i among their own k + 1 nearest.
3. Expansion (Eq. 6 of the paper): start from R(i, k1); for every c in it, take
   R(c, round(k1 / 2)) (numpy rounding, halves to even) and add it when it shares more than
   2/3 of its items with R(i, k1): ``|R(c, k1/2) ∩ R(i, k1)| > 2/3 |R(c, k1/2)|``. The strict
   ">" is the authors'; ``expansion="loose"`` uses ">=".
4. V[i, j] = exp(-M[i, j]) over the expanded set, normalised to sum 1 (Eq. 7).
5. Local query expansion (Eq. 11) when k2 != 1: V[i] <- mean of V over the k2 nearest of i.
6. Jaccard distance between query i and gallery j (Eq. 10 with min-sum):
   ``1 - s / (2 - s)`` with ``s = sum_k min(V[i, k], V[j, k])``.
7. Result: ``jaccard * (1 - lambda) + M * lambda`` on the query x gallery block.

This implementation never forms N x N matrices: M is produced in row chunks only to find each
item's nearest neighbours (exact stable order: ties by index, where the authors' unstable
`argsort` is arbitrary), V is kept as index/weight lists, and the Jaccard overlaps come from an
inverted index restricted to the gallery, one block of queries at a time. Weights and overlaps
are computed in float64 (the authors use float32); the output is float32 like theirs.
"""

from __future__ import annotations

import numpy as np
import torch

from reidnb.metrics.rank import ArrayLike, as_tensor

EXPANSIONS = ("strict", "loose")
_ROW_ELEMENTS = 1 << 23  # elements of M produced at once
_PAIR_BUDGET = 1 << 23  # (query entry, gallery entry) pairs handled at once
_TRANSPOSE_BAND = 64


class _Blocks:
    """The three input blocks; `full(r, c)` reads D[r, c] of the joined matrix elementwise."""

    def __init__(self, q_g: torch.Tensor, q_q: torch.Tensor, g_g: torch.Tensor) -> None:
        self.q_g, self.q_q, self.g_g = q_g, q_q, g_g
        self.num_q, self.num_g = q_g.shape
        self.num = self.num_q + self.num_g

    def full(self, r: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        nq = self.num_q
        out = torch.empty(r.shape, dtype=self.q_g.dtype, device=r.device)
        for rq in (True, False):
            for cq in (True, False):
                m = ((r < nq) == rq) & ((c < nq) == cq)
                rr, cc = r[m], c[m]
                if rq and cq:
                    out[m] = self.q_q[rr, cc]
                elif rq:
                    out[m] = self.q_g[rr, cc - nq]
                elif cq:
                    out[m] = self.q_g[cc, rr - nq]
                else:
                    out[m] = self.g_g[rr - nq, cc - nq]
        return out

    def squared_rows(self, a: int, b: int, out: torch.Tensor) -> None:
        """Write float32 D[:, a:b].T ** 2 (rows a..b of M before scaling) into `out`."""
        nq = self.num_q
        if b <= nq:
            _square_into(self.q_q[:, a:b], out[:, :nq], transpose=True)
            _square_into(self.q_g[a:b], out[:, nq:], transpose=False)
        else:
            _square_into(self.q_g[:, a - nq : b - nq], out[:, :nq], transpose=True)
            _square_into(self.g_g[:, a - nq : b - nq], out[:, nq:], transpose=True)


def _square_into(src: torch.Tensor, dst: torch.Tensor, transpose: bool) -> None:
    """dst = float32(src ** 2), or of src.T; the transpose goes in bands of rows of `src`
    (reading a tall column slice in one go is several times slower)."""
    if not transpose:
        bands = [(0, src.shape[0], src, dst)]
    else:
        step = _TRANSPOSE_BAND
        bands = [
            (r, min(r + step, src.shape[0]), src[r : r + step].T, dst[:, r : r + step])
            for r in range(0, src.shape[0], step)
        ]
    for _, _, part, out in bands:
        if part.dtype == torch.float32:
            torch.mul(part, part, out=out)
        else:
            out.copy_(part * part)


def _rows(table: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """table[index] for a 2-D table (index_select is much faster than advanced indexing)."""
    return table.index_select(0, index.reshape(-1)).view(*index.shape, table.shape[1])


def _square32(x: torch.Tensor) -> torch.Tensor:
    """Square in the input precision, then cast to float32, as the authors' code does."""
    return (x * x).to(torch.float32)


def _column_max(blocks: _Blocks) -> torch.Tensor:
    """max_k D[k, i]**2 for every item i (float32)."""
    nq = blocks.num_q
    q_part = torch.maximum(
        _square32(blocks.q_q).amax(dim=0), _square32(blocks.q_g).amax(dim=1)
    ) if nq else torch.empty(0, device=blocks.q_g.device)
    g_part = _square32(blocks.q_g).amax(dim=0) if nq else None
    step = max(1, _ROW_ELEMENTS // max(1, blocks.num_g))
    for a in range(0, blocks.num_g, step):
        part = _square32(blocks.g_g[a : a + step]).amax(dim=0)
        g_part = part if g_part is None else torch.maximum(g_part, part)
    return torch.cat([q_part, g_part])


def _nearest(blocks: _Blocks, col_max: torch.Tensor, k: int) -> torch.Tensor:
    """(N, k) indices of each item's k nearest in M, ordered by (value, index)."""
    n = blocks.num
    out = torch.empty(n, k, dtype=torch.int64, device=col_max.device)
    step = max(1, _ROW_ELEMENTS // n)
    buf = torch.empty(min(step, n), n, dtype=torch.float32, device=col_max.device)
    starts = list(range(0, blocks.num_q, step)) + list(range(blocks.num_q, n, step))
    take = min(k + 1, n)  # one extra to see whether a tie straddles the k-th place
    for a in starts:
        b = min(a + step, blocks.num_q if a < blocks.num_q else n)
        rows = buf[: b - a]
        blocks.squared_rows(a, b, rows)
        rows.div_(col_max[a:b, None])
        vals, idx = torch.topk(rows, take, dim=1, largest=False, sorted=True)
        if take > k:
            crowded = vals[:, k - 1] == vals[:, k]
        else:
            crowded = torch.zeros(vals.shape[0], dtype=torch.bool, device=vals.device)
        vals, idx = vals[:, :k], idx[:, :k]
        # canonical order among equal values: by index
        by_idx = torch.sort(idx, dim=1).indices
        vals, idx = vals.gather(1, by_idx), idx.gather(1, by_idx)
        by_val = torch.sort(vals, dim=1, stable=True).indices
        idx = idx.gather(1, by_val)
        if bool(crowded.any()):  # settle those rows with a full stable sort
            idx[crowded] = torch.sort(rows[crowded], dim=1, stable=True).indices[:, :k]
        out[a:b] = idx
    return out


def _reciprocal(nearest: torch.Tensor, k: int) -> torch.Tensor:
    """(N, k + 1) mask: is nearest[i, t] a k-reciprocal neighbour of i (Eq. 4)?"""
    fwd = nearest[:, : k + 1]
    me = torch.arange(fwd.shape[0], device=fwd.device)[:, None, None]
    return (_rows(fwd, fwd) == me).any(dim=2)


def _expanded_sets(nearest: torch.Tensor, k1: int, strict: bool) -> torch.Tensor:
    """(N, W) sorted expanded neighbour sets R*(i, k1) (Eq. 6), padded with N."""
    n = nearest.shape[0]
    half = int(np.around(k1 / 2.0))
    fwd, rec = nearest[:, : k1 + 1], _reciprocal(nearest, k1)
    fwd_h, rec_h = nearest[:, : half + 1], _reciprocal(nearest, half)
    pieces = []
    step = max(1, min(n, _ROW_ELEMENTS // n))
    mark = torch.zeros(step, n + 1, dtype=torch.bool, device=nearest.device)
    for a in range(0, n, step):
        f, r = fwd[a : a + step], rec[a : a + step]
        c = f.shape[0]
        own = torch.where(r, f, -1)  # R(i, k1), -1 = not a member
        cand, cand_ok = _rows(fwd_h, f), _rows(rec_h, f)  # R(c, k1/2), c in forward list
        slots = torch.where(r, f, n)  # column n collects the non-members
        mark[:c].scatter_(1, slots, True)
        member = mark[:c].gather(1, cand.flatten(1)).view_as(cand) & cand_ok
        mark[:c].scatter_(1, slots, False)
        shared, size = member.sum(dim=2), cand_ok.sum(dim=2)
        # compared in integers: for every size below 2000 the authors' float test
        # `shared > 2. / 3 * size` gives the same answer as 3 * shared > 2 * size
        passes = r & ((3 * shared > 2 * size) if strict else (3 * shared >= 2 * size))
        extra = torch.where(passes[..., None] & cand_ok, cand, -1).flatten(1)
        members = torch.sort(torch.cat([own, extra], dim=1), dim=1).values
        keep = members >= 0
        keep[:, 1:] &= members[:, 1:] != members[:, :-1]
        # move the kept (sorted, distinct) members to the front of each row
        slot = torch.cumsum(keep, dim=1) - 1
        width = members.shape[1]
        packed = torch.full((c, width + 1), n, dtype=members.dtype, device=members.device)
        packed.scatter_(1, torch.where(keep, slot, width), members)  # column `width` = trash
        pieces.append(packed[:, :width])
    sets = torch.cat(pieces)
    width = int((sets < n).sum(dim=1).max())
    return sets[:, :width]


def _weights(blocks: _Blocks, col_max: torch.Tensor, sets: torch.Tensor) -> torch.Tensor:
    """V[i, sets[i]] = exp(-M[i, j]) normalised over the set (Eq. 7), float64; pads get 0."""
    n = blocks.num
    ok = sets < n
    rows = torch.arange(n, device=sets.device)[:, None].expand_as(sets)
    cols = torch.where(ok, sets, 0)
    m = _square32(blocks.full(cols[ok], rows[ok])) / col_max[rows[ok]]
    w = torch.zeros(sets.shape, dtype=torch.float64, device=sets.device)
    w[ok] = torch.exp(-m.to(torch.float64))
    return w / w.sum(dim=1, keepdim=True)


def _query_expansion(
    sets: torch.Tensor, w: torch.Tensor, nearest: torch.Tensor, k2: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Sparse V after local query expansion (Eq. 11) as (row, col, value), sorted by row, col."""
    n = sets.shape[0]
    if k2 == 1:
        ok = sets < n
        rows = torch.arange(n, device=sets.device)[:, None].expand_as(sets)
        return rows[ok], sets[ok], w[ok]
    out_r, out_c, out_v = [], [], []
    step = max(1, _ROW_ELEMENTS // (k2 * sets.shape[1]))
    for a in range(0, n, step):
        nb = nearest[a : a + step, :k2]
        cols, vals = _rows(sets, nb).flatten(1), _rows(w, nb).flatten(1)
        rows = torch.arange(a, a + nb.shape[0], device=sets.device)[:, None].expand_as(cols)
        ok = cols < n
        key = rows[ok] * n + cols[ok]
        uniq, inv = torch.unique(key, sorted=True, return_inverse=True)
        total = torch.zeros(uniq.shape, dtype=torch.float64, device=sets.device)
        total.index_add_(0, inv, vals[ok])
        out_r.append(torch.div(uniq, n, rounding_mode="floor"))
        out_c.append(uniq % n)
        out_v.append(total / k2)
    return torch.cat(out_r), torch.cat(out_c), torch.cat(out_v)


def _min_overlap(
    rows: torch.Tensor, cols: torch.Tensor, vals: torch.Tensor, num_q: int, num_all: int,
    emit,
) -> None:
    """For blocks of queries, s[i, j] = sum_k min(V[i, k], V[num_q + j, k]); calls emit(a, b, s)."""
    dev = rows.device
    num_g = num_all - num_q
    gal = rows >= num_q
    g_row, g_col, g_val = rows[gal] - num_q, cols[gal], vals[gal]
    order = torch.sort(g_col, stable=True).indices  # inverted index: by column k
    g_row, g_col, g_val = g_row[order].int(), g_col[order], g_val[order]
    col_count = torch.bincount(g_col, minlength=num_all)
    col_start = torch.cumsum(col_count, 0) - col_count
    q_mask = rows < num_q
    q_row, q_col, q_val = rows[q_mask], cols[q_mask], vals[q_mask]
    q_ptr = torch.searchsorted(q_row, torch.arange(num_q + 1, device=dev))
    pairs = col_count[q_col]  # gallery entries met by each query entry
    per_query = torch.zeros(num_q, dtype=torch.int64, device=dev).index_add_(0, q_row, pairs)
    cum = torch.cumsum(per_query, 0).cpu()
    a = 0
    max_rows = max(1, min(_ROW_ELEMENTS, 2**31 - 1) // max(1, num_g))
    while a < num_q:
        base = int(cum[a - 1]) if a else 0
        b = int(torch.searchsorted(cum, torch.tensor(base + _PAIR_BUDGET), right=True))
        b = min(max(b, a + 1), a + max_rows, num_q)
        e0, e1 = int(q_ptr[a]), int(q_ptr[b])
        cnt = pairs[e0:e1]
        live = cnt > 0
        cnt = cnt[live]
        total = int(cum[b - 1]) - base
        # pair p belongs to query entry `entry[p]` and meets the gallery entry
        # col_start[k] + (p - first[entry]) of that entry's column k
        first = torch.cumsum(cnt, 0) - cnt
        step = torch.zeros(total, dtype=torch.int32, device=dev)
        step[first[1:]] = 1
        entry = torch.cumsum(step, 0, dtype=torch.int32)
        shift = (col_start[q_col[e0:e1][live]] - first).int().index_select(0, entry)
        g = torch.arange(total, dtype=torch.int32, device=dev).add_(shift)
        base_row = ((q_row[e0:e1][live] - a) * num_g).int()
        target = base_row.index_select(0, entry).add_(g_row.index_select(0, g))
        value = q_val[e0:e1][live].index_select(0, entry)
        torch.minimum(value, g_val.index_select(0, g), out=value)
        s = torch.bincount(target, weights=value, minlength=(b - a) * num_g)
        emit(a, b, s.view(b - a, num_g))
        a = b


def re_ranking(
    q_g_dist: ArrayLike,
    q_q_dist: ArrayLike,
    g_g_dist: ArrayLike,
    k1: int = 20,
    k2: int = 6,
    lambda_value: float = 0.3,
    expansion: str = "strict",
):
    """k-reciprocal re-ranking (Zhong et al., CVPR 2017) as in the authors' public code.

    Args:
        q_g_dist, q_q_dist, g_g_dist: plain (not squared) distances, (q, g), (q, q), (g, g);
            numpy arrays or torch tensors (CUDA tensors are processed on the GPU).
        k1, k2, lambda_value: the paper's k1, k2 and lambda (defaults 20, 6, 0.3).
        expansion: "strict" (the authors' ">" in the 2/3 test, the default) or "loose" (">=").

    Returns:
        (q, g) float32 re-ranked distances: numpy for numpy input, else a tensor on the input's
        device. Steps and the deviations (stable tie order, float64 inside) are in the module
        docstring.
    """
    if expansion not in EXPANSIONS:
        raise ValueError(f"expansion: expected one of {EXPANSIONS}, got {expansion!r}")
    if not 0.0 <= float(lambda_value) <= 1.0:
        raise ValueError(f"lambda_value: expected a number in [0, 1], got {lambda_value!r}")
    q_g = as_tensor(q_g_dist, "q_g_dist")
    dev = q_g.device
    q_q, g_g = as_tensor(q_q_dist, "q_q_dist", dev), as_tensor(g_g_dist, "g_g_dist", dev)
    if q_g.ndim != 2:
        raise ValueError(f"q_g_dist: expected a 2-D (query, gallery) matrix, got {q_g.ndim}-D")
    nq, ng = q_g.shape
    if tuple(q_q.shape) != (nq, nq) or tuple(g_g.shape) != (ng, ng):
        raise ValueError(
            f"re_ranking: expected q_q_dist {(nq, nq)} and g_g_dist {(ng, ng)} to match "
            f"q_g_dist {(nq, ng)}, got {tuple(q_q.shape)} and {tuple(g_g.shape)}"
        )
    n = nq + ng
    for name, k, low in (("k1", k1, 1), ("k2", k2, 1)):
        if not isinstance(k, (int, np.integer)) or k < low:
            raise ValueError(f"{name}: expected an integer >= {low}, got {k!r}")
    if k1 + 1 > n or k2 > n:
        raise ValueError(f"re_ranking: k1 + 1 = {k1 + 1} and k2 = {k2} must not exceed {n} items")
    dtype = torch.promote_types(torch.promote_types(q_g.dtype, q_q.dtype), g_g.dtype)
    if not dtype.is_floating_point:
        dtype = torch.float64
    blocks = _Blocks(q_g.to(dtype), q_q.to(dtype), g_g.to(dtype))
    for name, t in (("q_g_dist", q_g), ("q_q_dist", q_q), ("g_g_dist", g_g)):
        # a finite sum is a one-pass proof that every entry is finite
        if not bool(torch.isfinite(t.sum())) and not bool(torch.isfinite(t).all()):
            raise ValueError(f"{name}: contains NaN or infinite values")
    col_max = _column_max(blocks)
    if bool((col_max == 0).any()):
        bad = int(torch.nonzero(col_max == 0)[0])
        raise ValueError(f"re_ranking: item {bad} is at distance 0 from every item")
    nearest = _nearest(blocks, col_max, max(k1 + 1, k2))
    sets = _expanded_sets(nearest, k1, expansion == "strict")
    w = _weights(blocks, col_max, sets)
    rows, cols, vals = _query_expansion(sets, w, nearest, k2)
    out = torch.empty(nq, ng, dtype=torch.float32, device=dev)

    keep = 1.0 - lambda_value

    def emit(a: int, b: int, overlap: torch.Tensor) -> None:
        # (1 - s / (2 - s)) * keep + original * lambda  ==  keep + lambda * original - keep * q
        q = (overlap / (2.0 - overlap)).to(torch.float32)
        dst = out[a:b]
        if blocks.q_g.dtype == torch.float32:
            torch.mul(blocks.q_g[a:b], blocks.q_g[a:b], out=dst)
        else:
            dst.copy_(_square32(blocks.q_g[a:b]))
        dst.div_(col_max[a:b, None]).mul_(lambda_value).add_(keep).sub_(q.mul_(keep))

    _min_overlap(rows, cols, vals, nq, n, emit)
    return out if isinstance(q_g_dist, torch.Tensor) else out.numpy()
