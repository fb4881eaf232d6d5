"""Imports run one way (README, "What is where"): cli -> book, results, misalignment -> papers ->
experiments -> train -> the base (models, data, metrics, losses, cam, io, numerics, claims, viz,
...), never back. Checked on the source text, lazy imports inside functions included."""

import ast
from pathlib import Path

PKG = Path(__file__).resolve().parent.parent / "reidnb"
RANK = {"cli": 5, "__main__": 5, "book": 4, "results": 4, "misalignment": 4, "papers": 3,
        "experiments": 2, "train": 1}   # everything else: 0, the base


def _layer(module: str) -> str:
    """reidnb.train.engine -> "train"; reidnb.losses -> "losses"."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def _imports(path: Path) -> list[str]:
    module = ".".join(path.relative_to(PKG.parent).with_suffix("").parts)
    if path.name == "__init__.py":
        module = module.rsplit(".", 1)[0]
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
                names = [target] if node.module else [f"{target}.{a.name}" for a in node.names]
            else:
                names = [node.module or ""]
            found += [n for n in names if n.startswith("reidnb.")]
        elif isinstance(node, ast.Import):
            found += [a.name for a in node.names if a.name.startswith("reidnb.")]
    return found


def test_no_module_imports_a_higher_layer():
    wrong = []
    for path in sorted(PKG.rglob("*.py")):
        here = ".".join(path.relative_to(PKG.parent).with_suffix("").parts)
        for target in _imports(path):
            if RANK.get(_layer(target), 0) > RANK.get(_layer(here), 0):
                wrong.append(f"{here} imports {target}")
    assert not wrong, "imports against the layering:\n" + "\n".join(wrong)


def test_the_parser_sees_relative_and_lazy_imports():
    bad = PKG / "train" / "engine.py"
    assert any(_layer(t) in ("data", "metrics", "losses", "io") for t in _imports(bad))
    assert "reidnb.papers" in _imports(PKG / "results.py")   # the lazy claim-links import
