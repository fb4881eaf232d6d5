"""k-reciprocal re-ranking (Zhong, Zheng, Cao, Li: "Re-ranking person re-identification with
k-reciprocal encoding", CVPR 2017), giving the numbers of the authors' public numpy code.

What that code does, step by step (all items = queries then gallery, N of them):

1. Join the three distance blocks into the N x N matrix D, square it (in the input precision),
   cast to float32, divide every column by its maximum and transpose: ``M[i, j] = D[j, i]**2 /
   max_k D[k, i]**2``. Row i of M ranks all items for item i.
2. R(i, k) = the k-reciprocal neighbours of i (Eq. 4): items j among the k + 1 nearest of i
   (i itself included) that also have i among their own k + 1 nearest.
3. Expansion (Eq. 6): start from R(i, k1); for every c in it, take R(c, round(k1 / 2)) (numpy
   rounding, halves to even) and add it when it shares more than 2/3 of its items with R(i, k1):
   ``|R(c, k1/2) ∩ R(i, k1)| > 2/3 |R(c, k1/2)|``. The strict ">" is the authors';
   ``expansion="loose"`` uses ">=".
4. V[i, j] = exp(-M[i, j]) over the expanded set, normalised to sum 1 (Eq. 7).
5. Local query expansion (Eq. 11) when k2 != 1: V[i] <- mean of V over the k2 nearest of i.
6. Jaccard distance between query i and gallery j (Eq. 10 with min-sum):
   ``1 - s / (2 - s)`` with ``s = sum_k min(V[i, k], V[j, k])``.
7. Result: ``jaccard * (1 - lambda) + M * lambda`` on the query x gallery block.

How this implementation differs from that code (same numbers, other costs):

* No N x N matrix is formed. Nearest neighbours (step 2) come from a two-round search: items
  are cut into groups, the groups with the smallest minima are picked, then only their entries
  are ranked (`_smallest`, `_grouped_gallery_nearest`). For the gallery this runs over rows of
  the input, so the large g_g block is never transposed; queries get rows of M built in
  blocks. Ties are checked for and settled with a full stable sort (ties by index, where the
  authors' unstable `argsort` is arbitrary).
* V is sparse (a few dozen entries per row): a CSR matrix, and query expansion (step 5) is a
  sparse product with a k2-per-row averaging matrix.
* The min-sum (step 6) runs only over the pairs that contribute, a query entry and a gallery
  entry in the same column, met through an inverted index of the queries' entries and taken
  in layers, one vectorised step each (`_min_overlap`).
* Temporaries stay small (`_ROW_ELEMENTS`, `_OVERLAP_CELLS`): this saves memory at full scale
  and time at small scale, where a fresh multi-megabyte buffer costs about as much in page
  faults as the arithmetic done in it (measured on the build machine: a 2.2-million element
  `index_select` took 13 ms in one piece and 4 ms in pieces of 2^18).
* Weights and query expansion are computed in float64, the overlaps summed in float32 (the
  authors use float32 throughout); the output is float32 like theirs. Results agree with a
  port of the authors' code to about 3e-7 (tests/test_metrics.py, benchmarks/README.md).
"""

from __future__ import annotations

import warnings

import numpy as np
import torch

from reidnb.metrics.rank import ArrayLike, as_tensor

EXPANSIONS = ("strict", "loose")
_ROW_ELEMENTS = 1 << 19  # cells of a (rows x N) working block
_OVERLAP_CELLS = 1 << 22  # (query, gallery) overlaps summed at once
_TRANSPOSE_BAND = 64  # least rows of an input block transposed at once
_BAND_CELLS = 1 << 18  # cells of an input block transposed at once


class _Blocks:
    """The three input blocks of the joined N x N distance matrix D (made contiguous, so that
    entries can be read through flat views)."""

    def __init__(self, q_g: torch.Tensor, q_q: torch.Tensor, g_g: torch.Tensor) -> None:
        self.q_g, self.q_q, self.g_g = q_g.contiguous(), q_q.contiguous(), g_g.contiguous()
        self.num_q, self.num_g = q_g.shape
        self.num = self.num_q + self.num_g

    def full(self, r: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        """D[r, c] elementwise, for 1-D index tensors `r` and `c` (the blocks are contiguous)."""
        nq = self.num_q
        out = torch.empty(r.shape, dtype=self.q_g.dtype, device=r.device)
        r_q, c_q = r < nq, c < nq
        parts = (  # (entries of the block, the block, its row and column of D[r, c])
            (r_q & c_q, self.q_q, r, c),
            (r_q & ~c_q, self.q_g, r, c - nq),
            (~r_q & c_q, self.q_g, c, r - nq),  # D[gallery, query] = q_g[query, gallery]
            (~r_q & ~c_q, self.g_g, r - nq, c - nq),
        )
        for mask, table, rows, cols in parts:
            sel = torch.nonzero(mask).squeeze(1)
            if sel.numel():
                flat = rows.index_select(0, sel) * table.shape[1] + cols.index_select(0, sel)
                out.index_copy_(0, sel, table.view(-1).index_select(0, flat))
        return out

    def squared_rows(self, a: int, b: int, out: torch.Tensor) -> None:
        """Write float32 D[:, a:b].T ** 2 (rows a..b of M before scaling) into `out`; a..b lie
        within the queries or within the gallery."""
        nq = self.num_q
        if b <= nq:
            _square_into(self.q_q[:, a:b], out[:, :nq], transpose=True)
            _square_into(self.q_g[a:b], out[:, nq:], transpose=False)
        else:
            _square_into(self.q_g[:, a - nq : b - nq], out[:, :nq], transpose=True)
            _square_into(self.g_g[:, a - nq : b - nq], out[:, nq:], transpose=True)


def _square_into(src: torch.Tensor, dst: torch.Tensor, transpose: bool) -> None:
    """dst = float32(src ** 2), or of src.T. The transpose goes in bands of rows of `src` of
    about _BAND_CELLS cells (reading a tall column slice in one go is several times slower,
    and many small bands cost more in calls than they save)."""
    if not transpose:
        bands = [(src, dst)]
    else:
        step = max(_TRANSPOSE_BAND, _BAND_CELLS // max(1, dst.shape[0]))
        bands = [(src[r : r + step].T, dst[:, r : r + step]) for r in range(0, src.shape[0], step)]
    for part, out in bands:
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


def _row_blocks(lo: int, hi: int, width: int, least: int = 1) -> list[tuple[int, int]]:
    """Row ranges [a, b) covering lo..hi, of max(least, _ROW_ELEMENTS // width) rows at most."""
    step = max(least, _ROW_ELEMENTS // max(1, width))
    return [(a, min(a + step, hi)) for a in range(lo, hi, step)]


def _column_max(blocks: _Blocks) -> torch.Tensor:
    """max_k D[k, i]**2 of every item i (float32): the scale of row i of M. The blocks hold
    |D|, and squaring commutes with the maximum of non-negative numbers."""
    q_part = torch.maximum(blocks.q_q.amax(dim=0), blocks.q_g.amax(dim=1))
    g_part = torch.maximum(blocks.q_g.amax(dim=0), blocks.g_g.amax(dim=0))
    return _square32(torch.cat([q_part, g_part]))


def _group_size(n: int, take: int) -> int:
    """Items per group for the two-round searches: a power of two near sqrt(n / take), 1 when
    n is too small for groups to pay."""
    group = 1
    while (group * 2) ** 2 * take <= n and -(-n // (group * 2)) > take:
        group *= 2
    return group


def _smallest(rows: torch.Tensor, take: int, group: int) -> tuple[torch.Tensor, ...]:
    """The `take` smallest values of each row, ascending, their columns, and a mask of the rows
    whose answer is uncertain because of equal values (for `_settle` to redo).

    With group > 1 the row (its width a multiple of `group`) is cut into strided groups
    {j, j + G, j + 2G, ...} (G = width / group): the `take` groups with the smallest minima
    hold the answer whenever it lies below the smallest minimum of the other groups. A
    top-k over G minima and one over take * group candidates replace a top-k over the whole
    row, which is several times slower."""
    if group == 1:
        vals, cols = torch.topk(rows, take, dim=1, largest=False, sorted=True)
        return vals, cols, torch.zeros(rows.shape[0], dtype=torch.bool, device=rows.device)
    h, width = rows.shape
    num = width // group
    mins = rows.view(h, group, num).amin(dim=1)
    low, chosen = torch.topk(mins, take + 1, dim=1, largest=False, sorted=True)
    offsets = num * torch.arange(group, device=rows.device)
    cand = (chosen[:, :take, None] + offsets).flatten(1)  # the chosen groups' columns
    vals, pos = torch.topk(rows.gather(1, cand), take, dim=1, largest=False, sorted=True)
    return vals, cand.gather(1, pos), vals[:, -1] >= low[:, take]


def _settle(vals, idx, unsure, k: int, exact_rows) -> torch.Tensor:
    """The first k of `idx` in the canonical order (value, then index). Rows with a tie across
    the k-th place, or flagged `unsure`, are redone from their whole exact M rows, which
    `exact_rows(row_numbers)` supplies."""
    if vals.shape[1] > k:
        unsure = unsure | (vals[:, k - 1] == vals[:, k])
    vals, idx = vals[:, :k], idx[:, :k]
    by_idx = torch.sort(idx, dim=1).indices
    vals, idx = vals.gather(1, by_idx), idx.gather(1, by_idx)
    idx = idx.gather(1, torch.sort(vals, dim=1, stable=True).indices)
    if bool(unsure.any()):
        for redo in torch.nonzero(unsure).squeeze(1).split(64):  # bounded memory
            m = exact_rows(redo)
            # (value, index) as one int64 key: the bits of a float >= 0 sort like its value,
            # and a top-k of distinct keys is much faster than a stable sort of tied values
            key = m.view(torch.int32).to(torch.int64).bitwise_left_shift_(32)
            key.bitwise_or_(torch.arange(m.shape[1], device=m.device))
            idx[redo] = torch.topk(key, k, dim=1, largest=False, sorted=True).indices
    return idx


def _gallery_rows(blocks: _Blocks, col_max: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
    """Rows nq + items of M, i.e. columns of D for the gallery items `items` (0-based)."""
    d = torch.cat([blocks.q_g.index_select(1, items), blocks.g_g.index_select(1, items)]).T
    return _square32(d).div_(col_max[blocks.num_q + items, None])


def _explicit_nearest(
    blocks: _Blocks, col_max: torch.Tensor, k: int, take: int, lo: int, hi: int
) -> torch.Tensor:
    """k nearest of the items lo..hi (all queries or all gallery), from rows of M built in
    blocks: D[:, i] squared and scaled (a transpose of the input blocks)."""
    n = blocks.num
    dev = col_max.device
    group = _group_size(n, take)
    width = -(-n // group) * group
    ranges = _row_blocks(lo, hi, width, least=256)  # few topk calls
    buf = torch.empty(max(b - a for a, b in ranges), width, dtype=torch.float32, device=dev)
    buf[:, n:] = float("inf")  # padding up to a whole number of groups
    out = torch.empty(hi - lo, k, dtype=torch.int64, device=dev)
    for a, b in ranges:
        m = buf[: b - a]
        blocks.squared_rows(a, b, m[:, :n])
        m[:, :n].div_(col_max[a:b, None])
        vals, idx, unsure = _smallest(m, take, group)
        out[a - lo : b - lo] = _settle(vals, idx, unsure, k, lambda r, m=m: m[r, :n])
    return out


def _grouped_gallery_nearest(
    blocks: _Blocks, col_max: torch.Tensor, k: int, take: int, group: int
) -> torch.Tensor:
    """k nearest of every gallery item without transposing the input.

    Row j of M is column j of D, which lies in q_g and g_g. Their rows are cut into groups of
    `group` consecutive rows; the minimum of each group, for every column, takes one
    row-by-row pass. For each gallery item the `take` groups with the smallest minima hold
    its `take` nearest whenever these lie below the smallest minimum of the other groups
    (else `_settle` redoes the item); only those groups' entries are then read."""
    nq, ng, n = blocks.num_q, blocks.num_g, blocks.num
    dev = col_max.device
    firsts, mins = [], []
    for offset, x in ((0, blocks.q_g), (nq, blocks.g_g)):
        whole = x.shape[0] - x.shape[0] % group
        step = max(group, _ROW_ELEMENTS // max(1, ng) // group * group)
        for a in range(0, whole, step):
            b = min(a + step, whole)
            mins.append(x[a:b].view((b - a) // group, group, ng).amin(dim=1))
        if whole < x.shape[0]:
            mins.append(x[whole:].amin(dim=0, keepdim=True))
        firsts.append(torch.arange(0, x.shape[0], group, device=dev) + offset)
    first = torch.cat(firsts)
    size = (torch.cat([first[1:], first.new_full((1,), n)]) - first).clamp_(max=group)
    # smallest M value of each group (squaring and scaling keep the order of |D|)
    low_all = _square32(torch.cat(mins)).div_(col_max[nq:]).T.contiguous()
    low, chosen = torch.topk(low_all, take + 1, dim=1, largest=False, sorted=True)
    chosen = chosen[:, :take]
    step = torch.arange(group, device=dev)
    rows = (first[chosen][..., None] + step).flatten(1)  # candidate rows of D, (ng, take*group)
    valid = (step < size[chosen][..., None]).flatten(1)
    rows.masked_fill_(~valid, 0)
    # D[row, nq + j] is q_g[row, j] above the gallery rows of D and g_g[row - nq, j] below
    j = torch.arange(ng, device=dev)[:, None]
    from_q = blocks.q_g.view(-1).index_select(0, (rows.clamp(max=nq - 1) * ng + j).view(-1))
    from_g = blocks.g_g.view(-1).index_select(0, ((rows - nq).clamp_(min=0) * ng + j).view(-1))
    cand = _square32(torch.where((rows < nq).view(-1), from_q, from_g)).view_as(rows)
    cand.div_(col_max[nq:, None]).masked_fill_(~valid, float("inf"))
    vals, pos = torch.topk(cand, take, dim=1, largest=False, sorted=True)
    unsure = vals[:, -1] >= low[:, take]
    return _settle(
        vals, rows.gather(1, pos), unsure, k, lambda r: _gallery_rows(blocks, col_max, r)
    )


def _nearest(blocks: _Blocks, col_max: torch.Tensor, k: int) -> torch.Tensor:
    """Each item's k nearest in M, (N, k), ordered by (value, index)."""
    n, nq = blocks.num, blocks.num_q
    take = min(k + 1, n)  # one extra to see whether a tie straddles the k-th place
    group = _group_size(n, take)
    if group > 1:
        gallery = _grouped_gallery_nearest(blocks, col_max, k, take, group)
    else:
        gallery = _explicit_nearest(blocks, col_max, k, take, nq, n)
    return torch.cat([_explicit_nearest(blocks, col_max, k, take, 0, nq), gallery])


def _reciprocal(nearest: torch.Tensor, k: int, a: int = 0, b: int | None = None) -> torch.Tensor:
    """(b - a, k + 1) mask: is nearest[i, t] a k-reciprocal neighbour of i (Eq. 4), for the
    items i in a..b-1 (default: all)?"""
    fwd = nearest[:, : k + 1]
    b = fwd.shape[0] if b is None else b
    me = torch.arange(a, b, device=fwd.device)[:, None, None]
    return (_rows(fwd, fwd[a:b]) == me).any(dim=2)


def _distinct(values: torch.Tensor, scratch: torch.Tensor) -> torch.Tensor:
    """(c, L) mask that is True at exactly one position of every distinct value of each row.

    `scratch` is a (>= c, > max value) int32 buffer. No sorting: every position writes its
    slot number to scratch[row, value], and the position whose number stays there is kept
    (which duplicate wins does not matter, they stand for the same item).
    """
    c, width = values.shape
    slot = torch.arange(width, dtype=torch.int32, device=values.device).expand(c, width)
    table = scratch[:c]
    table.scatter_(1, values, slot)
    return table.gather(1, values) == slot


def _sparse_csr(crow, cols, vals, shape: tuple[int, int]) -> torch.Tensor:
    """torch.sparse_csr_tensor without its warnings (CSR support is labelled beta; the
    invariant checks are skipped on purpose, the callers build valid indices)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
        return torch.sparse_csr_tensor(crow, cols, vals, shape, check_invariants=False)


def _csr(counts: torch.Tensor, cols: torch.Tensor, vals: torch.Tensor, width: int) -> torch.Tensor:
    """Sparse CSR (len(counts) x width) matrix whose row r holds the next counts[r] (col, val)
    pairs; columns are sorted within each row, as the format asks."""
    n = counts.numel()
    row = torch.repeat_interleave(counts)
    order = torch.sort(row * width + cols).indices
    crow = torch.zeros(n + 1, dtype=torch.int64, device=cols.device)
    torch.cumsum(counts, 0, out=crow[1:])
    return _sparse_csr(crow, cols[order], vals[order], (n, width))


def _expanded_sets(nearest: torch.Tensor, k1: int, strict: bool) -> tuple[torch.Tensor, ...]:
    """Expanded neighbour sets R*(i, k1) (Eq. 6) as (size of each, members row after row)."""
    n = nearest.shape[0]
    dev = nearest.device
    half = int(np.around(k1 / 2.0))
    rec_h = _reciprocal(nearest, half)
    half_all = torch.where(rec_h, nearest[:, : half + 1], n)  # R(c, k1/2) of every item c
    half_size = rec_h.sum(dim=1)
    ranges = _row_blocks(0, n, n + 1)
    rows = max(b - a for a, b in ranges)
    mark = torch.zeros(rows, n + 1, dtype=torch.bool, device=dev)
    scratch = torch.empty(rows, n + 1, dtype=torch.int32, device=dev)
    counts, flat = [], []
    for a, b in ranges:
        c, f = b - a, nearest[a:b, : k1 + 1]
        own = torch.where(_reciprocal(nearest, k1, a, b), f, n)  # R(i, k1); n = absent
        cand = _rows(half_all, f)  # (c, k1 + 1, half + 1): R(c', k1/2) for c' in the list
        mark[:c].scatter_(1, own, True)
        mark[:c, n] = False  # the padding column is never a member
        shared = mark[:c].gather(1, cand.flatten(1)).view_as(cand).sum(dim=2)
        mark[:c].scatter_(1, own, False)
        size = half_size[f]
        # compared in integers: for every size below 2000 the authors' float test
        # `shared > 2. / 3 * size` gives the same answer as 3 * shared > 2 * size
        passes = (own < n) & ((3 * shared > 2 * size) if strict else (3 * shared >= 2 * size))
        members = torch.cat([own, torch.where(passes[..., None], cand, n).flatten(1)], dim=1)
        keep = _distinct(members, scratch) & (members < n)
        counts.append(keep.sum(dim=1))
        flat.append(members[keep])
    return torch.cat(counts), torch.cat(flat)


def _weights(
    blocks: _Blocks, col_max: torch.Tensor, counts: torch.Tensor, members: torch.Tensor
) -> torch.Tensor:
    """Sparse CSR V: V[i, j] = exp(-M[i, j]) normalised over R*(i, k1) (Eq. 7), float64."""
    n = blocks.num
    row = torch.repeat_interleave(counts)
    m = _square32(blocks.full(members, row)) / col_max[row]  # M[i, j] = D[j, i]^2 / max
    w = torch.exp(-m.to(torch.float64))
    total = torch.zeros(n, dtype=torch.float64, device=w.device).index_add_(0, row, w)
    return _csr(counts, members, w / total[row], n)


def _query_expansion(v: torch.Tensor, nearest: torch.Tensor, k2: int) -> torch.Tensor:
    """Local query expansion (Eq. 11): V[i] <- mean of V over the k2 nearest of i, as the
    sparse product of a k2-per-row averaging matrix with V."""
    if k2 == 1:
        return v
    n = nearest.shape[0]
    near = torch.sort(nearest[:, :k2], dim=1).values.reshape(-1)
    share = torch.full((n * k2,), 1.0 / k2, dtype=v.dtype, device=v.device)
    crow = torch.arange(0, n * k2 + 1, k2, device=v.device)
    return _sparse_csr(crow, near, share, (n, n)) @ v


def _min_overlap(v: torch.Tensor, num_q: int, emit) -> None:
    """s[i, j] = sum_k min(V[i, k], V[num_q + j, k]) (the min-sum of Eq. 10) for blocks of
    gallery items: calls emit(j0, j1, s_t) with s_t[j - j0, i] = s[i, j].

    Only columns k where both rows are non-zero contribute, so the queries' entries are grouped
    by column (an inverted index) and every gallery entry (j, k) meets the query entries of
    column k. These meetings are taken in layers: layer t pairs each gallery entry with the
    t-th query entry of its column, so a layer is one vectorised step and there are as many
    layers as the longest column has query entries."""
    crow, col = v.crow_indices(), v.col_indices()
    val = v.values().to(torch.float32)  # summed in float32, as the authors do
    n = crow.numel() - 1
    num_g = n - num_q
    dev = val.device
    row = torch.repeat_interleave(crow.diff()).int()  # int32 indices: half the memory traffic
    e_q = int(crow[num_q])  # the queries' entries come first
    order = torch.sort(col[:e_q], stable=True).indices
    q_row, q_val = row[:e_q].index_select(0, order), val[:e_q].index_select(0, order)
    q_count = torch.bincount(col[:e_q], minlength=n)
    q_start = (torch.cumsum(q_count, 0) - q_count).int()
    g_ptr = (crow[num_q:] - e_q).cpu()
    max_rows = max(1, _OVERLAP_CELLS // max(1, num_q))
    for j0 in range(0, num_g, max_rows):
        j1 = min(j0 + max_rows, num_g)
        e0, e1 = e_q + int(g_ptr[j0]), e_q + int(g_ptr[j1])
        g_col = col[e0:e1]
        meets = q_count.index_select(0, g_col)  # query entries met by each gallery entry
        # by decreasing `meets`, so that the entries of layer t are a prefix (sorted as the
        # ascending int16/int32 key most - meets: about 5x faster than int64 or "descending")
        narrow = torch.int16 if num_q < 2**15 else torch.int32
        most = int(meets.max()) if meets.numel() else 0
        by_meets = torch.sort((most - meets).to(narrow), stable=True).indices
        start = q_start.index_select(0, g_col).index_select(0, by_meets)
        base = ((row[e0:e1] - num_q - j0) * num_q).index_select(0, by_meets)
        g_val = val[e0:e1].index_select(0, by_meets)
        hist = torch.bincount(meets)
        layer_sizes = (meets.numel() - torch.cumsum(hist, 0))[:-1].tolist()
        s = torch.zeros((j1 - j0) * num_q, dtype=val.dtype, device=dev)
        for t, size in enumerate(layer_sizes):
            met = start[:size] + t
            value = torch.minimum(g_val[:size], q_val.index_select(0, met))
            s.index_add_(0, base[:size] + q_row.index_select(0, met), value)
        emit(j0, j1, s.view(j1 - j0, num_q))


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
    if nq == 0 or ng == 0:
        raise ValueError(f"re_ranking: expected at least one query and one gallery item, "
                         f"got {nq} and {ng}")
    n = nq + ng
    for name, k, low in (("k1", k1, 1), ("k2", k2, 1)):
        if not isinstance(k, (int, np.integer)) or k < low:
            raise ValueError(f"{name}: expected an integer >= {low}, got {k!r}")
    if k1 + 1 > n or k2 > n:
        raise ValueError(f"re_ranking: k1 + 1 = {k1 + 1} and k2 = {k2} must not exceed {n} items")
    dtype = torch.promote_types(torch.promote_types(q_g.dtype, q_q.dtype), g_g.dtype)
    if not dtype.is_floating_point:
        dtype = torch.float64
    parts = []
    for name, t in (("q_g_dist", q_g), ("q_q_dist", q_q), ("g_g_dist", g_g)):
        t = t.to(dtype)
        low, high = torch.aminmax(t)  # NaN and infinities show in the extremes
        if not (bool(torch.isfinite(low)) and bool(torch.isfinite(high))):
            raise ValueError(f"{name}: contains NaN or infinite values")
        parts.append(t.abs() if bool(low < 0) else t)  # only squares are used
    blocks = _Blocks(*parts)
    col_max = _column_max(blocks)
    if bool((col_max == 0).any()):
        bad = int(torch.nonzero(col_max == 0)[0])
        raise ValueError(f"re_ranking: item {bad} is at distance 0 from every item")
    nearest = _nearest(blocks, col_max, max(k1 + 1, k2))
    counts, members = _expanded_sets(nearest, k1, expansion == "strict")
    v = _query_expansion(_weights(blocks, col_max, counts, members), nearest, k2)
    out = torch.empty(nq, ng, dtype=torch.float32, device=dev)
    keep = 1.0 - lambda_value

    def emit(j0: int, j1: int, overlap_t: torch.Tensor) -> None:
        # (1 - s / (2 - s)) * keep + original * lambda  ==  keep + lambda * original - keep * q
        # (j1 - j0, nq) -> (nq, j1 - j0) as one copy of a whole transposed matrix, which
        # torch does block by block
        q = (overlap_t / (2.0 - overlap_t)).to(torch.float32).T.contiguous()
        src, dst = blocks.q_g[:, j0:j1], out[:, j0:j1]
        if src.dtype == torch.float32:
            torch.mul(src, src, out=dst)
        else:
            dst.copy_(_square32(src))
        dst.div_(col_max[:nq, None]).mul_(lambda_value).add_(keep).sub_(q.mul_(keep))

    _min_overlap(v, nq, emit)
    return out if isinstance(q_g_dist, torch.Tensor) else out.numpy()
