"""What every chapter does first: work from the project root, quiet known warnings."""

from __future__ import annotations

import os
import warnings
from pathlib import Path


def project_root(start: str | Path | None = None) -> Path | None:
    """The nearest folder at or above `start` holding both `notebooks/` and `reidnb/`."""
    here = Path(start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / "notebooks").is_dir() and (folder / "reidnb").is_dir():
            return folder
    return None


def setup(profile: str | None = None) -> Path:
    """Check the chapter's `profile` parameter (an unknown one stops here, with the choices,
    before any data is generated), chdir to the project root (so `data/`, `runs/` and `results/`
    resolve the same under papermill, nbval and JupyterLab), silence the random-init warning,
    which the run record already keeps, render figures inline and let table cells hold a
    sentence (pandas cuts text at 50 characters by default; the settings tables' values are
    longer). Returns the working folder."""
    if profile is not None:
        from ..experiments import check_profile
        check_profile(profile)
    root = project_root()
    if root is not None:
        os.chdir(root)
    warnings.filterwarnings("ignore", message="no ImageNet weights")
    _inline_figures()
    import pandas as pd
    pd.set_option("display.max_colwidth", 200)
    return Path.cwd()


def left_out(scope: str, section: str, paper: str = "", claims: tuple[str, ...] = ()) -> bool:
    """For a chapter section whose runs only the full scope makes (`experiments.SCOPES`): in the
    core scope, print that this build did not run `section` and how to run it, publish each of
    `claims` of `paper` on the scoreboard as not tested for that reason, and return True (the
    section's cells then skip their tables); in the full scope return False."""
    if scope == "full":
        return False
    if scope != "core":
        from ..experiments import SCOPES
        raise ValueError(f"unknown scope {scope!r}; choose one of {SCOPES}")
    print(f"{section}: not run in this build (scope 'core': each paper's headline rows only). "
          "To run it, execute the chapter with scope='full' (papermill -p scope full, or "
          "`reidnb book --scope full`).")
    if claims:
        from .. import verdicts
        for claim in claims:
            verdicts.publish_not_tested(paper, claim, "not run in the core scope")
    return True


def _inline_figures() -> None:
    """Show returned matplotlib Figures as PNG in a notebook (reidnb.viz never uses pyplot)."""
    try:
        from IPython import get_ipython
    except ImportError:
        return
    shell = get_ipython()
    if shell is not None:
        shell.run_line_magic("matplotlib", "inline")
        shell.run_line_magic("config", "InlineBackend.figure_formats = ['png']")


def show_source(obj, start: str | None = None, stop: str | None = None):
    """Show the source of a reidnb function or class as a highlighted code block, optionally only
    the lines from the first containing `start` to the first after it containing `stop`."""
    import inspect
    import textwrap

    from IPython.display import Markdown

    lines = inspect.getsource(obj).splitlines()
    if start is not None:
        first = next(i for i, line in enumerate(lines) if start in line)
        last = len(lines)
        if stop is not None:
            last = next(i for i, line in enumerate(lines[first + 1:], first + 1) if stop in line) + 1
        lines = lines[first:last]
    where = f"{inspect.getmodule(obj).__name__}.{obj.__qualname__}"
    body = textwrap.dedent("\n".join(lines))
    return Markdown(f"`{where}`\n\n```python\n{body}\n```")
