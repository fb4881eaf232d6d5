"""reidnb.portable_ops: square roots with the same bits on every CPU, and no unpinned op left in
the library (torch.sqrt's MKL path gave chapter 3 other numbers on an AVX2 EPYC than on an
AVX-512 Xeon; tools/numerics_ops_check.py shows it under an emulated CPU)."""

import ast
from pathlib import Path

import numpy as np
import pytest
import torch

from reidnb import losses, portable_ops
from reidnb.models.zheng2019 import consistency

ROOT = Path(__file__).resolve().parents[1]


def _rounded_reference(x: np.ndarray) -> np.ndarray:
    """float32 square roots correctly rounded: the float64 root of a float32 rounds to it exactly
    (53 >= 2 * 24 + 2 bits)."""
    return np.sqrt(x.astype(np.float64)).astype(np.float32)


@pytest.fixture
def awkward_values():
    g = torch.Generator().manual_seed(0)
    spread = torch.rand(50_000, generator=g) * 10.0 ** torch.randint(-30, 30, (50_000,), generator=g)
    edges = torch.tensor([0.0, 1e-45, 1e-38, 1e-12, 1.0, 2.0, 3.4e38])
    return torch.cat([spread.float(), edges])


def test_sqrt_is_correctly_rounded_bit_for_bit(awkward_values):
    got = portable_ops.sqrt(awkward_values).numpy()
    want = _rounded_reference(awkward_values.numpy())
    assert got.dtype == np.float32 and got.shape == want.shape
    assert np.array_equal(got.view(np.int32), want.view(np.int32))


def test_sqrt_keeps_shape_layout_0d_empty_and_float64(awkward_values):
    x = awkward_values[:600].reshape(20, 30).t()      # non-contiguous input
    got = portable_ops.sqrt(x)
    assert got.shape == (30, 20)
    assert torch.equal(got, torch.from_numpy(_rounded_reference(x.numpy())))
    assert portable_ops.sqrt(torch.tensor(6.25)).item() == 2.5          # a 0-d tensor
    assert portable_ops.sqrt(torch.empty(0, 3)).shape == (0, 3)
    d = awkward_values.double()[:1000]
    assert portable_ops.sqrt(d).dtype == torch.float64
    assert torch.equal(portable_ops.sqrt(d), torch.from_numpy(np.sqrt(d.numpy())))


def test_sqrt_gradient_is_torch_sqrts_and_twice_differentiable():
    x = (torch.rand(12, dtype=torch.float64, generator=torch.Generator().manual_seed(1)) + 0.1
         ).requires_grad_()
    assert torch.autograd.gradcheck(portable_ops.sqrt, (x,))
    assert torch.autograd.gradgradcheck(portable_ops.sqrt, (x,))
    xf = x.detach().float().requires_grad_()
    g = torch.linspace(-1, 1, 12)
    portable_ops.sqrt(xf).backward(g)
    root = torch.from_numpy(_rounded_reference(xf.detach().numpy()))
    assert torch.equal(xf.grad, g / (2 * root))


def test_distances_and_consistency_take_the_rounded_root():
    x = torch.randn(32, 16, generator=torch.Generator().manual_seed(2))
    d2 = losses.pairwise_distances(x, squared=True).clamp_min(1e-12)
    assert torch.equal(losses.pairwise_distances(x),
                       torch.from_numpy(_rounded_reference(d2.numpy())))
    p1, p2 = x[:16], x[16:]
    sq = (p1 - p2).pow(2).sum(dim=1) + 1e-8
    assert torch.equal(consistency(p1, p2), torch.from_numpy(_rounded_reference(sq.numpy())))


# --- no unpinned op in the library -----------------------------------------------------------
UNPINNED_CALLS = {"sqrt", "rsqrt", "atan", "atan2", "cdist"}
NUMERIC_MODULES = {"np", "numpy", "math", "portable_ops"}


def _unpinned_calls(path: Path, root: Path = ROOT) -> list[str]:
    """`torch.sqrt(..)`, `t.sqrt()`, `torch.cdist(..)` (but p=1), `torch.atan(..)`,
    `t.pow(0.5)`, in a source file; `np.`, `math.` and `portable_ops.` calls are exact."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Attribute):
            continue
        owner = node.func.value
        if isinstance(owner, ast.Name) and owner.id in NUMERIC_MODULES:
            continue
        name = node.func.attr
        p_one = any(k.arg == "p" and isinstance(k.value, ast.Constant) and k.value.value == 1
                    for k in node.keywords)
        half = (name == "pow" and node.args and isinstance(node.args[0], ast.Constant)
                and node.args[0].value == 0.5)
        if (name in UNPINNED_CALLS and not (name == "cdist" and p_one)) or half:
            found.append(f"{path.relative_to(root)}:{node.lineno}: .{name}(...)")
    return found


def test_the_lint_sees_each_unpinned_form(tmp_path):
    src = tmp_path / "m.py"
    src.write_text("import torch, math, numpy as np\n"
                   "a = torch.sqrt(x)\nb = x.sqrt()\nc = torch.cdist(x, y)\nd = x.pow(0.5)\n"
                   "e = torch.cdist(x, y, p=1)\nf = math.sqrt(2)\ng = np.sqrt(x)\n"
                   "h = portable_ops.sqrt(x)\n")
    found = _unpinned_calls(src, root=tmp_path)
    assert [f.split(":")[1] for f in found] == ["2", "3", "4", "5"]


def test_library_and_notebooks_call_no_unpinned_op():
    files = [p for p in (ROOT / "reidnb").rglob("*.py") if p.name != "portable_ops.py"]
    files += sorted((ROOT / "notebooks").glob("*.py"))
    found = [hit for f in files for hit in _unpinned_calls(f)]
    assert not found, ("these calls give other bits on another CPU (MKL's vector math); use "
                       "reidnb.portable_ops.sqrt or losses.pairwise_distances:\n" + "\n".join(found))


# --- tools/numerics_ops_check.py ---------------------------------------------------------------
def _ops_check_tool():
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "numerics_ops_check", ROOT / "tools" / "numerics_ops_check.py")
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    return tool


def test_the_ops_battery_covers_the_known_unpinned_ops_and_is_repeatable():
    tool = _ops_check_tool()
    first, second = tool.battery(), tool.battery()
    assert tool.KNOWN_UNPINNED <= set(first)          # a renamed op would pass the check silently
    assert first == second
    # the library's own paths are checked too, not only torch's
    assert {"portable_ops.sqrt", "losses.pairwise_distances",
            "losses.batch_hard_triplet backward"} <= set(first)
