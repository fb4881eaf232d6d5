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

* The inputs are read where they lie, whatever their layout and dtype (numpy or torch, float32
  or float64, C- or F-ordered, views of one larger matrix, read-only arrays): nothing is
  copied whole, and every reader squares what it reads in the input precision, then works in
  float32 (the same numbers as squaring the joined matrix first). One pass over each block
  (`_scan`, in bands that follow its layout) checks the values, takes the column scales and
  the gallery search's group minima. Column-major g_g (F order, a transposed tensor) has the
  gallery's rows of M contiguous, so they are built directly (`_explicit_nearest`) instead.
  Before this, a float64 view of one (N, N) matrix cost 3x the float32 time at Market scale:
  whole contiguous copies, several float64 passes, and a strided `index_select` that took a
  slow path (benchmarks/README.md).
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
_BAND_CELLS = 1 << 18  # cells of an input band squared at once (scan, transposes)


class _Blocks:
    """The three input blocks of the joined N x N distance matrix D, read where they lie: any
    strides (C- or F-ordered, views of one larger matrix), any real dtype. Nothing is copied
    whole; every reader squares what it reads (`sq`), in float32 from then on.

    `dtype` is the precision the squares are taken in: the blocks' common dtype (float64 for
    integers), as the authors' code squares its input before casting to float32."""

    def __init__(
        self, q_g: torch.Tensor, q_q: torch.Tensor, g_g: torch.Tensor,
        dtype: torch.dtype | None = None,
    ) -> None:
        self.q_g, self.q_q, self.g_g = q_g, q_q, g_g
        self.num_q, self.num_g = q_g.shape
        self.num = self.num_q + self.num_g
        self.dtype = _common_dtype(q_g, q_q, g_g) if dtype is None else dtype
        # float16/bfloat16/float32 squares are the same whether taken in float32 or float64
        # (their exact products are rounded once to float32 either way): take them in float32
        self._narrow = self.dtype in (torch.float32, torch.float64)
        self._flat = {id(t): _storage_span(t) for t in (q_g, q_q, g_g)}

    def sq(self, x: torch.Tensor) -> torch.Tensor:
        """float32(x ** 2), squared in the blocks' precision (a no-copy float32 product when x
        is float32)."""
        if x.dtype != self.dtype:
            narrow = self._narrow and x.dtype in (torch.float16, torch.bfloat16, torch.float32)
            x = x.to(torch.float32 if narrow else self.dtype)
        # (squaring straight into a float32 `out` would save a temporary, but torch's
        # mixed-dtype kernel is ~3x slower on column-major bands: measured, not adopted)
        return (x * x).to(torch.float32)

    def square_into(self, src: torch.Tensor, dst: torch.Tensor) -> None:
        """dst = float32(src ** 2) for a float32 `dst` of src's shape, in bands that follow
        src's layout: bands of rows when its rows are contiguous, else bands of columns (the
        copy then transposes; reading a tall column slice in one go is several times slower,
        and many small bands cost more in calls than they save). The temporaries stay about
        _BAND_CELLS cells."""
        rows, cols = src.shape
        if _rows_contiguous(src):
            step = max(1, _BAND_CELLS // max(1, cols))
            bands = [(src[a : a + step], dst[a : a + step]) for a in range(0, rows, step)]
        else:
            step = max(_TRANSPOSE_BAND, _BAND_CELLS // max(1, rows))
            bands = [(src[:, c : c + step], dst[:, c : c + step]) for c in range(0, cols, step)]
        in_place = src.dtype == torch.float32 and self._narrow
        for part, out in bands:
            if in_place:
                torch.mul(part, part, out=out)
            else:
                out.copy_(self.sq(part))

    def take(self, table: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
        """table[rows, cols] elementwise (broadcast), flattened: one index_select on the span
        of storage that `table` lies in (much faster than advanced indexing)."""
        flat = rows * table.stride(0) + cols * table.stride(1)
        return self._flat[id(table)].index_select(0, flat.reshape(-1))

    def full(self, r: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        """float32 D[r, c] ** 2 elementwise, for 1-D index tensors `r` and `c`."""
        nq = self.num_q
        out = torch.empty(r.shape, dtype=torch.float32, device=r.device)
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
                found = self.take(table, rows.index_select(0, sel), cols.index_select(0, sel))
                out.index_copy_(0, sel, self.sq(found))
        return out

    def squared_rows(self, a: int, b: int, out: torch.Tensor) -> None:
        """Write float32 D[:, a:b].T ** 2 (rows a..b of M before scaling) into `out`; a..b lie
        within the queries or within the gallery."""
        nq = self.num_q
        if b <= nq:
            self.square_into(self.q_q[:, a:b].T, out[:, :nq])
            self.square_into(self.q_g[a:b], out[:, nq:])
        else:
            self.square_into(self.q_g[:, a - nq : b - nq].T, out[:, :nq])
            self.square_into(self.g_g[:, a - nq : b - nq].T, out[:, nq:])


def _common_dtype(*tables: torch.Tensor) -> torch.dtype:
    """The dtype the authors' code would square in: the promoted one, float64 for integers."""
    dtype = tables[0].dtype
    for t in tables[1:]:
        dtype = torch.promote_types(dtype, t.dtype)
    return dtype if dtype.is_floating_point else torch.float64


def _storage_span(t: torch.Tensor) -> torch.Tensor:
    """A 1-D view of the stretch of storage a 2-D tensor's entries lie in: entry [r, c] is at
    r * t.stride(0) + c * t.stride(1) (non-negative strides, as torch has)."""
    span = 1 + sum((size - 1) * stride for size, stride in zip(t.shape, t.stride()))
    return t.as_strided((span,), (1,))


def _rows(table: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """table[index] for a 2-D table (index_select is much faster than advanced indexing)."""
    return table.index_select(0, index.reshape(-1)).view(*index.shape, table.shape[1])


def _row_blocks(lo: int, hi: int, width: int, least: int = 1) -> list[tuple[int, int]]:
    """Row ranges [a, b) covering lo..hi, of max(least, _ROW_ELEMENTS // width) rows at most."""
    step = max(least, _ROW_ELEMENTS // max(1, width))
    return [(a, min(a + step, hi)) for a in range(lo, hi, step)]


def _scan_block(
    blocks: _Blocks, x: torch.Tensor, group: int, want_rows: bool
) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """One pass over the block `x`, in bands that follow its layout, of float32 squares:
    (the maximum of every column, of every row if `want_rows`, and when group > 1 the minimum
    of every group of `group` consecutive rows in every column, (ceil(rows / group), cols)).
    NaN propagates into the maxima."""
    rows, cols = x.shape
    dev = x.device
    col_max = torch.zeros(cols, dtype=torch.float32, device=dev)
    row_max = torch.zeros(rows, dtype=torch.float32, device=dev) if want_rows else None
    mins = None
    if group > 1:
        mins = torch.empty(-(-rows // group), cols, dtype=torch.float32, device=dev)

    def group_mins(s: torch.Tensor, g0: int, out_cols: slice) -> None:
        whole = s.shape[0] - s.shape[0] % group
        if whole:
            part = s[:whole].reshape(whole // group, group, s.shape[1]).amin(dim=1)
            mins[g0 : g0 + whole // group, out_cols] = part
        if whole < s.shape[0]:  # the last, partial group
            mins[g0 + whole // group, out_cols] = s[whole:].amin(dim=0)

    if _rows_contiguous(x):
        step = max(group, _BAND_CELLS // max(1, cols) // group * group)
        for a in range(0, rows, step):
            s = blocks.sq(x[a : a + step])
            torch.maximum(col_max, s.amax(dim=0), out=col_max)
            if row_max is not None:
                row_max[a : a + step] = s.amax(dim=1)
            if mins is not None:
                group_mins(s, a // group, slice(None))
    else:  # columns are contiguous (F order, transposed tensors)
        step = max(1, _BAND_CELLS // max(1, rows))
        for c in range(0, cols, step):
            s = blocks.sq(x[:, c : c + step])
            col_max[c : c + step] = s.amax(dim=0)
            if row_max is not None:
                torch.maximum(row_max, s.amax(dim=1), out=row_max)
            if mins is not None:
                group_mins(s, 0, slice(c, c + step))
    return col_max, row_max, mins


def _scan(blocks: _Blocks, group: int) -> tuple[torch.Tensor, torch.Tensor | None]:
    """One pass over every input block: the scale max_k D[k, i]**2 of every item i (float32:
    the scale of row i of M; squaring commutes with the maximum of |D|), and when group > 1
    the smallest square of every group of `group` consecutive rows of q_g, then of g_g, in
    every gallery column (`_grouped_gallery_nearest`'s first round). Raises ValueError naming
    a block that holds NaN or infinities, or whose squares overflow float32."""
    qq_col, _, _ = _scan_block(blocks, blocks.q_q, 1, want_rows=False)
    qg_col, qg_row, qg_mins = _scan_block(blocks, blocks.q_g, group, want_rows=True)
    gg_col, _, gg_mins = _scan_block(blocks, blocks.g_g, group, want_rows=False)
    for name, table, col in (("q_g_dist", blocks.q_g, qg_col), ("q_q_dist", blocks.q_q, qq_col),
                             ("g_g_dist", blocks.g_g, gg_col)):
        if not bool(torch.isfinite(col).all()):
            if torch.is_floating_point(table) and not bool(torch.isfinite(table).all()):
                raise ValueError(f"{name}: contains NaN or infinite values")
            # finite distances whose squares are not: squared in float16 (as the authors'
            # code would for float16 input; overflows above 255) or cast to float32
            half = blocks.dtype == torch.float16
            raise ValueError(
                f"{name}: distances up to {float(table.abs().max()):.3g} overflow "
                f"{'float16' if half else 'float32'} when squared (re-ranking works on squared "
                f"distances); expected distances below {255 if half else 1.8e19:.3g}, scale "
                f"them down{' or pass float32' if half else ''}")
    col_max = torch.cat([torch.maximum(qq_col, qg_row), torch.maximum(qg_col, gg_col)])
    mins = None if group == 1 else torch.cat([qg_mins, gg_mins])
    return col_max, mins


def _column_max(blocks: _Blocks) -> torch.Tensor:
    """max_k D[k, i]**2 of every item i (float32): the scale of row i of M."""
    return _scan(blocks, 1)[0]


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
    # gathered through `take`: index_select along dim 1 of a strided view (a slice of one
    # larger matrix) takes a slow elementwise path, ~0.5 s per call at half Market scale
    cols = items[None, :]
    parts = [
        blocks.sq(blocks.take(t, torch.arange(t.shape[0], device=items.device)[:, None], cols))
        .view(t.shape[0], -1)
        for t in (blocks.q_g, blocks.g_g)
    ]
    return torch.cat(parts).T.div_(col_max[blocks.num_q + items, None])


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
    blocks: _Blocks, col_max: torch.Tensor, k: int, take: int, group: int, mins: torch.Tensor
) -> torch.Tensor:
    """k nearest of every gallery item without transposing the input.

    Row j of M is column j of D, which lies in q_g and g_g. Their rows are cut into groups of
    `group` consecutive rows; `mins` holds the smallest square of each group, for every
    column (from `_scan`'s one pass; it is divided in place). For each gallery item the
    `take` groups with the smallest minima hold its `take` nearest whenever these lie below
    the smallest minimum of the other groups (else `_settle` redoes the item); only those
    groups' entries are then read."""
    nq, ng, n = blocks.num_q, blocks.num_g, blocks.num
    dev = col_max.device
    first = torch.cat([torch.arange(0, nq, group, device=dev),
                       torch.arange(0, ng, group, device=dev) + nq])
    size = (torch.cat([first[1:], first.new_full((1,), n)]) - first).clamp_(max=group)
    # smallest M value of each group (squaring and scaling keep the order of |D|)
    low_all = mins.div_(col_max[nq:]).T.contiguous()
    low, chosen = torch.topk(low_all, take + 1, dim=1, largest=False, sorted=True)
    chosen = chosen[:, :take]
    step = torch.arange(group, device=dev)
    rows = (first[chosen][..., None] + step).flatten(1)  # candidate rows of D, (ng, take*group)
    valid = (step < size[chosen][..., None]).flatten(1)
    rows.masked_fill_(~valid, 0)
    # D[row, nq + j] is q_g[row, j] above the gallery rows of D and g_g[row - nq, j] below
    j = torch.arange(ng, device=dev)[:, None]
    from_q = blocks.sq(blocks.take(blocks.q_g, rows.clamp(max=nq - 1), j))
    from_g = blocks.sq(blocks.take(blocks.g_g, (rows - nq).clamp_(min=0), j))
    cand = torch.where((rows < nq).view(-1), from_q, from_g).view_as(rows)
    cand.div_(col_max[nq:, None]).masked_fill_(~valid, float("inf"))
    vals, pos = torch.topk(cand, take, dim=1, largest=False, sorted=True)
    unsure = vals[:, -1] >= low[:, take]
    return _settle(
        vals, rows.gather(1, pos), unsure, k, lambda r: _gallery_rows(blocks, col_max, r)
    )


def _rows_contiguous(x: torch.Tensor) -> bool:
    """Are the entries of each row of the 2-D `x` closer together than those of a column?"""
    return x.shape[0] <= 1 or (x.shape[1] > 1 and x.stride(1) <= x.stride(0))


def _search_group(blocks: _Blocks, k: int) -> int:
    """Rows per group of `_grouped_gallery_nearest` for k nearest among the items, 1 when the
    gallery's rows of M are built explicitly instead: when there are too few items for groups
    to pay, or when g_g's columns are contiguous (F order, a transposed tensor), so that rows
    of M are read straight from it and its group minima would take slow short reductions."""
    if not _rows_contiguous(blocks.g_g):
        return 1
    return _group_size(blocks.num, min(k + 1, blocks.num))


def _nearest(
    blocks: _Blocks, col_max: torch.Tensor, k: int, mins: torch.Tensor | None = None
) -> torch.Tensor:
    """Each item's k nearest in M, (N, k), ordered by (value, index). `mins`: `_scan`'s group
    minima for group `_search_group(N, k)` (computed here when not given; consumed)."""
    n, nq = blocks.num, blocks.num_q
    take = min(k + 1, n)  # one extra to see whether a tie straddles the k-th place
    group = _search_group(blocks, k)
    if group > 1:
        if mins is None:
            mins = _scan(blocks, group)[1]
        gallery = _grouped_gallery_nearest(blocks, col_max, k, take, group, mins)
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
    m = blocks.full(members, row) / col_max[row]  # M[i, j] = D[j, i]^2 / max
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


def _as_distances(x: ArrayLike, name: str, device: torch.device | None = None) -> torch.Tensor:
    """A torch view of distances `x` (numpy arrays are shared, read-only ones too: re-ranking
    never writes to its input), or ValueError naming what was expected."""
    if not isinstance(x, torch.Tensor):
        x = np.asarray(x)
        if x.dtype.kind in "fiu" and not x.dtype.isnative:
            x = x.astype(x.dtype.newbyteorder("="))  # torch reads native byte order only
        if x.dtype.kind in "fiu" and not x.flags.writeable and min(x.strides, default=0) >= 0:
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
                x = torch.from_numpy(x)
    kind = x.dtype.kind if isinstance(x, np.ndarray) else (
        "f" if x.dtype.is_floating_point else "c" if x.dtype.is_complex else
        "b" if x.dtype == torch.bool else "i")
    if kind not in "fiu":
        raise ValueError(
            f"{name}: expected real distances (float32 fastest; float64, float16 or integers "
            f"also taken), got dtype {x.dtype}")
    return as_tensor(x, name, device)


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
            numpy arrays or torch tensors (CUDA tensors are processed on the GPU) of a real
            dtype, in any layout: C- or F-ordered, views of one larger matrix, read-only.
            They are read in place, never copied whole nor written; float64 costs about
            1.1-1.3x float32 at Market scale (benchmarks/README.md).
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
    q_g = _as_distances(q_g_dist, "q_g_dist")
    dev = q_g.device
    q_q = _as_distances(q_q_dist, "q_q_dist", dev)
    g_g = _as_distances(g_g_dist, "g_g_dist", dev)
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
    # the inputs are read where they lie (no whole copy, whatever their dtype and strides):
    # one pass finds the scales, checks the values and takes the gallery search's group minima
    blocks = _Blocks(q_g, q_q, g_g)
    k = max(k1 + 1, k2)
    col_max, mins = _scan(blocks, _search_group(blocks, k))
    if bool((col_max == 0).any()):
        bad = int(torch.nonzero(col_max == 0)[0])
        raise ValueError(f"re_ranking: item {bad} is at distance 0 from every item")
    nearest = _nearest(blocks, col_max, k, mins)
    counts, members = _expanded_sets(nearest, k1, expansion == "strict")
    v = _query_expansion(_weights(blocks, col_max, counts, members), nearest, k2)
    out = torch.empty(nq, ng, dtype=torch.float32, device=dev)
    keep = 1.0 - lambda_value

    def emit(j0: int, j1: int, overlap_t: torch.Tensor) -> None:
        # (1 - s / (2 - s)) * keep + original * lambda  ==  keep + lambda * original - keep * q
        # (j1 - j0, nq) -> (nq, j1 - j0) as one copy of a whole transposed matrix, which
        # torch does block by block
        q = (overlap_t / (2.0 - overlap_t)).to(torch.float32).T.contiguous()
        dst = out[:, j0:j1]
        blocks.square_into(blocks.q_g[:, j0:j1], dst)
        dst.div_(col_max[:nq, None]).mul_(lambda_value).add_(keep).sub_(q.mul_(keep))

    _min_overlap(v, nq, emit)
    return out if isinstance(q_g_dist, torch.Tensor) else out.numpy()
