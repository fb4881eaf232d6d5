"""pytest at the project root. nbval over notebooks/ compares the committed smoke outputs
exactly, which holds on every x86-64 CPU only in the portable numeric mode (reidnb/numerics.py):
its environment is set here before nbval starts a kernel, so a bare `pytest --nbval notebooks`
checks the same thing as `make test`."""

import os


def pytest_configure(config):
    if getattr(config.option, "nbval", False) or getattr(config.option, "nbval_lax", False):
        from reidnb.numerics import portable_env
        os.environ.update(portable_env())
