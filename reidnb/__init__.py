"""reidnb: a thin library behind a reproducibility book for attention-based Siamese re-ID."""

__version__ = "0.1.0"

from . import numerics as _numerics  # noqa: E402

_numerics.apply()  # REIDNB_NUMERICS=portable: the same floating-point path on every x86-64 CPU
