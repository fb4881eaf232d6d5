"""Training: the engine (fit, evaluate, checkpoints and resume, run-level seeding), the objectives
that turn a batch into named losses, and torchrun data parallelism."""
