"""The `lacgan` command line. Each package registers its own subcommands; this module only dispatches.

Commands that need Prefect live in `flows.cli_flows` and import it only when run.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# Each module has `register(subparsers)`, which adds subcommands whose `func(args) -> int | None` runs them.
REGISTRARS = (
    "manifests.cohort.cli",  # cohort, sheet
    "pipelines.cli_data",  # ingest, align, regions
    "lacgan.cli",  # train, edit
    "detectors.cli",  # detect train|score
    "pipelines.cli_trainset",  # trainset, payoff
    "flows.cli_flows",  # plan, generate, score, report, augment, serve
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lacgan", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in REGISTRARS:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        rc = args.func(args)
    except KeyboardInterrupt:
        print("interrupted; re-run the same command to resume", file=sys.stderr)
        return 130
    return int(rc or 0)


if __name__ == "__main__":
    sys.exit(main())
