"""`python -m multitudes` and the `multitudes` command.

The command line is imported inside `run`, so that a Ctrl-C or a SIGTERM while torch and click
are still loading ends with one line, as one during a run does, not an import traceback or a
silent death. Once loaded, `cli.main` installs its own SIGTERM handler (it keeps checkpoints).
"""

import signal
import sys


def _terminated_while_starting(signum, frame) -> None:
    sys.stderr.write("multitudes: terminated (SIGTERM) while starting; nothing was written\n")
    sys.exit(143)


def run() -> None:
    signal.signal(signal.SIGTERM, _terminated_while_starting)
    try:
        from multitudes.cli.main import main
    except KeyboardInterrupt:
        sys.stderr.write("multitudes: interrupted while starting; nothing was written\n")
        sys.exit(130)
    main()


if __name__ == "__main__":
    run()
