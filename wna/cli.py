"""The ``wna`` command.

    wna run [NOTEBOOK ...] --profile {smoke,ci,paper} [-p NAME VALUE ...]
    wna list
"""

from __future__ import annotations

import argparse
import sys

import yaml

from . import run as runner


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="wna", description="White Noise Analysis of Neural Networks")
    sub = p.add_subparsers(dest="cmd", required=True)

    r = sub.add_parser("run", help="execute notebooks into book/executed/")
    r.add_argument("notebooks", nargs="*", help="notebook names (default: all)")
    r.add_argument("--profile", default="ci", choices=runner.PROFILES)
    r.add_argument("-p", "--parameter", nargs=2, action="append", default=[],
                   metavar=("NAME", "VALUE"), help="override a parameter (VALUE parsed as YAML)")
    r.add_argument("--out", default=None, help="output folder (default book/executed)")
    r.add_argument("--no-progress", action="store_true")

    sub.add_parser("list", help="list the notebooks")
    return p


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.cmd == "list":
            for nb in runner.find_notebooks():
                print(nb.stem)
            return 0
        if args.cmd == "run":
            overrides = {k: yaml.safe_load(v) for k, v in args.parameter}
            outs = runner.run_notebooks(args.notebooks, args.profile, overrides, args.out,
                                        progress=not args.no_progress)
            for o in outs:
                print(o)
            return 0
    except (runner.NotebookFailed, FileNotFoundError, ValueError) as exc:
        print(f"wna: {exc}", file=sys.stderr)
        return 1
    return 2


if __name__ == "__main__":
    sys.exit(main())
