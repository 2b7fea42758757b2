"""How the ``myna`` command reports a failure: one line on stderr, no traceback.

Every reader names what it read in its errors (``train.json:7: ...``, ``m.nemo: member
'../x' ...``, ``last.ckpt: not a readable tensor file ...``); :func:`run_reporting` prints that
message as ``myna COMMAND: error: MESSAGE`` and returns exit status 2. An exception that is not
one of myna's expected kinds (a bug) is reported the same way, with its type and a hint, and
exit status 1. ``myna --debug ...`` or ``MYNA_DEBUG=1`` lets the exception through with its
traceback.

>>> sys.exit(run_reporting(args.func, args, command="train", debug=args.debug))
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Any, Callable

__all__ = ["run_reporting", "one_line", "debug_requested"]

# Errors that say what is wrong with the user's input (files, configs, arguments).
_EXPECTED = (ValueError, FileNotFoundError, NotADirectoryError, IsADirectoryError, PermissionError, KeyError)


def debug_requested(flag: bool = False) -> bool:
    """True with ``--debug`` or a non-empty, non-zero ``MYNA_DEBUG``."""
    return flag or os.environ.get("MYNA_DEBUG", "").strip() not in ("", "0", "false", "no")


def one_line(err: BaseException) -> str:
    """The message of ``err`` on one line. A DataLoader worker's error carries the worker's
    traceback in its text; only its last line (the original error) is kept."""
    text = str(err).strip()
    if isinstance(err, KeyError) and len(err.args) == 1:
        text = str(err.args[0])
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if any(line.startswith("Original Traceback") for line in lines):
        lines = lines[-1:]
    return " ".join(lines) if lines else type(err).__name__


def run_reporting(func: Callable[[Any], int], args: Any, command: str, debug: bool = False) -> int:
    """Run ``func(args)``; report an exception as one line (see the module docstring)."""
    if debug_requested(debug):
        return func(args)
    try:
        return func(args)
    except KeyboardInterrupt:
        print(f"myna {command}: interrupted", file=sys.stderr)
        return 130
    except _EXPECTED as err:
        logging.getLogger("myna").debug("error", exc_info=True)
        print(f"myna {command}: error: {one_line(err)}", file=sys.stderr)
        return 2
    except Exception as err:  # noqa: BLE001 - a bug, or a library's error myna does not translate yet
        logging.getLogger("myna").debug("error", exc_info=True)
        print(f"myna {command}: error: {type(err).__name__}: {one_line(err)} "
              f"(run with --debug or MYNA_DEBUG=1 for the traceback)", file=sys.stderr)
        return 1
