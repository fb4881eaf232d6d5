"""Execute every chapter that has a scope parameter in the smoke profile and the *core* scope (the
path `make book` takes on its synthetic runs, which nbval's full-scope smoke notebooks do not),
and check that each one runs to the end and publishes the same claims as its committed smoke
notebook: a claim whose runs the core leaves out is published as "not tested", not dropped.

Run after nbval (`make test` does), so the smoke runs are cached and only the cells cost time:

    .venv/bin/python -m reidnb numerics portable -- .venv/bin/python tools/check_core_scope.py
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def published_claims(nb) -> dict[tuple[str, str], list[str]]:
    """(paper, claim) -> the verdicts of the records a notebook's cells publish."""
    from reidnb.verdicts import MIME

    claims: dict[tuple[str, str], list[str]] = {}
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            rec = (out.get("data") or {}).get(MIME)
            if rec:
                claims[(rec["paper"], rec["claim"])] = [r["verdict"] for r in rec["rows"]]
    return claims


def main(argv: list[str] | None = None) -> int:
    import nbformat

    from reidnb.book.mainjob import chapter_sources, declared_parameters, execute_notebook

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", nargs="*", default=None, help="chapter name prefixes")
    ap.add_argument("--out", default=str(REPO / "build" / "core_scope"))
    args = ap.parse_args(argv)
    problems = []
    for src in chapter_sources(only=args.only):
        if "scope" not in declared_parameters(src):
            continue
        out = Path(args.out) / f"{src.stem}.ipynb"
        secs = execute_notebook(src, out, {"profile": "smoke", "data_root": "data",
                                           "device": "cpu", "scope": "core"})
        core = published_claims(nbformat.read(out, as_version=4))
        full = published_claims(nbformat.read(src.with_suffix(".ipynb"), as_version=4))
        missing = sorted(set(full) - set(core))
        extra = sorted(set(core) - set(full))
        left_out = sum(v == ["not tested"] for k, v in core.items() if full.get(k) != v)
        print(f"{src.stem}: core scope ran in {secs:.0f} s; {len(core)} claims published "
              f"({left_out} of them not tested here but judged or noted in the full scope)")
        for what, claims in (("not published in the core scope", missing),
                             ("published only in the core scope", extra)):
            problems += [f"{src.stem}: claim {c!r} of {p} {what}" for p, c in claims]
    for p in problems:
        print("PROBLEM:", p)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
