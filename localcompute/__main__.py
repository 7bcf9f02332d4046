"""The `localcompute` command: `python -m localcompute` and the console script alike.

The CLI is imported inside main(), not above it: a Ctrl-C in the second or so that
Python spends importing it ends the command with 130 and one line, never with a
traceback. Once a command runs, it answers signals itself (`run`: cli/interrupts.py).
"""

from __future__ import annotations

import signal
import sys

EXIT_INTERRUPTED = 130  # 128 + SIGINT, as a shell reports it


def main() -> int:
    try:
        from localcompute.cli import main as command

        return command()
    except KeyboardInterrupt:
        # A second interrupt on the way out (a pending one, or Ctrl-C pressed twice) must
        # not turn the exit into death by SIGINT (-2): once seen under load in CI.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        print("localcompute: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
