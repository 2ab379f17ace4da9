"""The command line: one module per command in this package (registry.py finds them), each with
its arguments and its run function; main() builds the parser from them, runs the command, and
turns a user's error into one line and exit status 2."""

from __future__ import annotations

import argparse
import os
import sys

from linpath.cli.common import add_threads
from linpath.cli.registry import commands
from linpath.errors import LinpathError
from linpath.runtime import threads


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors (no usage dump)."""

    def error(self, message):
        message = message.replace("\r", "\\r").replace("\n", "\\n")  # an argument's own line breaks, shown
        self.exit(2, f"linpath: error: {message} (see '{self.prog} --help')\n")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="linpath", description="Loss and error along linear paths in weight space (Frankle 2020)."
    )
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    for command in commands():
        p = sub.add_parser(command.name, help=command.help)
        command.arguments(p)
        add_threads(p)
        p.set_defaults(run=command.run, tensors=command.tensors)
    return parser


def _os_error(e: OSError) -> str:
    reason = e.strerror or str(e) or type(e).__name__
    files = [str(f) for f in (e.filename, e.filename2) if f is not None]
    return f"{reason}: {' -> '.join(files)}" if files else reason


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    clean = False
    try:
        threads.apply(args.threads, sample=args.tensors)  # before torch is imported: runtime/threads.py
        code = args.run(args)
        clean = True
        return code
    except LinpathError as e:
        rank = os.environ.get("RANK", "0")
        where = f" (rank {rank})" if rank != "0" else ""  # under torchrun, say which rank failed
        print(f"linpath: error{where}: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # the machine's or the file system's refusal: one line naming the file
        print(f"linpath: error: {_os_error(e)}", file=sys.stderr)
        return 2
    except UnicodeDecodeError as e:
        print(f"linpath: error: a file is not UTF-8 text ({e.reason} at byte {e.start})", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(
            "linpath: interrupted; finished work is saved, rerun the same command to resume", file=sys.stderr
        )
        return 130
    finally:
        if "linpath.runtime.distributed" in sys.modules:  # loaded by the commands that train, sweep or plane
            sys.modules["linpath.runtime.distributed"].shutdown(clean)
