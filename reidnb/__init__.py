"""reidnb: a thin library behind a reproducibility book for attention-based Siamese re-ID."""

__version__ = "0.1.0"

from . import threads as _threads  # noqa: E402

_threads.apply_default()  # how torch's idle CPU threads wait; only before torch is loaded

from . import numerics as _numerics  # noqa: E402

_numerics.apply()  # REIDNB_NUMERICS=portable: the same floating-point path on every x86-64 CPU
