"""The `reidnb` command line (also `python -m reidnb`).

  reidnb data generate synthreid OUT [--size smoke|default] [--seed 0]
  reidnb data verify NAME PATH
  reidnb run NAME [--profile synthetic]   NAME: any registered experiment, e.g. ide
      [--dataset synthreid] [--data-root data] [--device auto] [--force] [--wait]
  torchrun --nproc_per_node N -m reidnb run ide ...   (DistributedDataParallel, one process a GPU)
  reidnb book [--profile synthetic] [--scope core|full] [--data-root data] [--out build]
      [--workers N]                      N single-thread processes train the runs first
  reidnb numerics describe              this process's numeric path (what a run record keeps)
  reidnb numerics env                   the portable mode's variables, NAME=value
  reidnb numerics portable -- CMD ...   run CMD in the portable mode (e.g. jupyter lab)
"""

from __future__ import annotations

import argparse
import sys


def _generate(args) -> int:
    if args.name != "synthreid":
        print(f"error: only 'synthreid' can be generated, not {args.name!r}", file=sys.stderr)
        return 2
    from .data.synthetic import generate
    meta = generate(args.out, size=args.size, seed=args.seed, overwrite=args.overwrite,
                    height=args.height, width=args.width)
    counts = meta.get("counts", meta)
    print(f"SynthReID ({args.size}, seed {args.seed}) written to {args.out}: {counts}")
    return 0


def _verify(args) -> int:
    from .data.manifests import verify
    report = verify(args.name, args.path, check_images=not args.no_images)
    print(report)
    return 0 if report.ok else 1


def _run(args) -> int:
    from . import experiments, papers
    from .train import distributed
    exp = papers.experiment(args.experiment, args.profile, args.dataset, args.seed)
    command = _command(args, args.experiment, args.seed)
    try:
        for first in papers.prerequisites(exp):  # e.g. the IDE run jeong2020's trunk comes from
            command = _command(args, _registered_name(papers, first), 0)
            rec = experiments.run_experiment(first, args.data_root, args.runs_dir, args.device,
                                             wait=args.wait)
            print(f"{rec['run_name']} (prerequisite): {rec['metrics']}")
        command = _command(args, args.experiment, args.seed)
        record = experiments.run_experiment(exp, args.data_root, args.runs_dir, args.device,
                                            force=args.force, wait=args.wait)
        if distributed.is_main():  # under torchrun, once
            print(f"{record['run_name']}: {record['metrics']}")
    except KeyboardInterrupt:
        print(f"interrupted: the checkpoint of the last finished epoch is kept; rerun `{command}` "
              "to resume from it", file=sys.stderr)
        return 130
    except (ValueError, OSError, RuntimeError) as err:
        # the messages name the run folder and what to do; `reidnb run NAME` is the failed run's
        text = str(err).replace(" (run_experiment(..., force=True))", "")
        print(f"error: {text.replace('reidnb run NAME', command)}", file=sys.stderr)
        return 1
    finally:
        distributed.shutdown()
    return 0


def _registered_name(papers, exp) -> str:
    """The registry name that makes `exp` (a prerequisite run), else its own name."""
    for name, make in papers.EXPERIMENTS.items():
        if make(exp.profile, exp.dataset, 0).run_name == exp.run_name:
            return name
    return exp.name


def _command(args, name: str, seed: int) -> str:
    """The `reidnb run` command line that makes this run (for messages)."""
    parts = ["reidnb run", name, "--profile", args.profile]
    if args.dataset:
        parts += ["--dataset", args.dataset]
    if seed:
        parts += ["--seed", str(seed)]
    for flag, default in (("data_root", "data"), ("runs_dir", "runs"), ("device", "auto")):
        if getattr(args, flag) != default:
            parts += [f"--{flag.replace('_', '-')}", str(getattr(args, flag))]
    return " ".join(parts)


def _book(args) -> int:
    from .book.mainjob import main_job
    return main_job(profile=args.profile, data_root=args.data_root, out=args.out,
                    device=args.device, only=args.only, scope=args.scope,
                    workers=args.workers)


def _numerics(args) -> int:
    import json
    import os

    from . import numerics
    if args.numerics_command == "describe":
        print(json.dumps(numerics.describe(), indent=2))
    elif args.numerics_command == "env":
        print(" ".join(f"{k}={v}" for k, v in numerics.portable_env().items()))
    else:
        cmd = args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd
        if not cmd:
            print("error: reidnb numerics portable -- CMD [ARGS...]: no command given",
                  file=sys.stderr)
            return 2
        os.execvpe(cmd[0], cmd, {**os.environ, **numerics.portable_env()})
    return 0


def _registry():
    from . import papers
    return papers


def _profiles() -> tuple[str, ...]:
    from .experiments import PROFILES
    return PROFILES


def _scopes() -> tuple[str, ...]:
    from .experiments import SCOPES
    return SCOPES


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="reidnb", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)

    data = sub.add_parser("data", help="generate or verify data sets").add_subparsers(
        dest="data_command", required=True)
    g = data.add_parser("generate", help="write SynthReID in the Market-1501 layout")
    g.add_argument("name", help="synthreid")
    g.add_argument("out")
    g.add_argument("--size", default="smoke")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--height", type=int, default=128)
    g.add_argument("--width", type=int, default=64)
    g.add_argument("--overwrite", action="store_true")
    g.set_defaults(func=_generate)
    v = data.add_parser("verify", help="check a data set copy against data_manifests/")
    v.add_argument("name")
    v.add_argument("path")
    v.add_argument("--no-images", action="store_true", help="skip opening every image")
    v.set_defaults(func=_verify)

    r = sub.add_parser("run", help="train and evaluate one experiment (cached by configuration)")
    r.add_argument("experiment", choices=sorted(_registry().EXPERIMENTS),
                   help="a registered experiment (reidnb/papers/)")
    r.add_argument("--profile", default="synthetic", choices=_profiles())
    r.add_argument("--dataset", default=None)
    r.add_argument("--data-root", default="data")
    r.add_argument("--runs-dir", default="runs")
    r.add_argument("--device", default="auto")
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--force", action="store_true",
                   help="retrain from scratch even if a record or checkpoint exists (the old run "
                   "folder's files are kept in RUN.replaced/ until the new run has finished)")
    r.add_argument("--wait", action="store_true",
                   help="if another process is training the same run, wait for it (and reuse "
                   "its record) instead of stopping")
    r.set_defaults(func=_run)

    b = sub.add_parser("book", help="generate data, execute every notebook, render the HTML book")
    b.add_argument("--profile", default="synthetic", choices=_profiles())
    b.add_argument("--data-root", default="data")
    b.add_argument("--out", default="build")
    b.add_argument("--device", default="cpu")
    b.add_argument("--only", nargs="*", default=None, help="notebook name prefixes to execute")
    b.add_argument("--scope", default=None, choices=_scopes(),
                   help="core: each paper's headline rows on 3 seeds (the synthetic profile's "
                   "default: 33 runs); full: every ablation, sweep and control too (103 "
                   "synthetic runs; the default of the other profiles)")
    b.add_argument("--workers", type=int, default=None,
                   help="single-thread processes that train the runs before the chapters "
                   "execute (default: one per core; 0: each chapter trains its own runs)")
    b.set_defaults(func=_book)

    n = sub.add_parser("numerics", help="numeric paths: describe this one, or run the portable "
                       "mode that gives the same numbers on every x86-64 CPU")
    nsub = n.add_subparsers(dest="numerics_command", required=True)
    nsub.add_parser("describe", help="this process's numeric path, as a run record keeps it")
    nsub.add_parser("env", help="the portable mode's environment, NAME=value")
    e = nsub.add_parser("portable", help="run a command in the portable mode")
    e.add_argument("cmd", nargs=argparse.REMAINDER)
    n.set_defaults(func=_numerics)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, OSError, RuntimeError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
