"""`python -m multitudes` and the `multitudes` command.

The command line is imported inside `run`, so that a Ctrl-C while torch and click are still
loading ends with the same one line as one during a run, not an import traceback.
"""

import sys


def run() -> None:
    try:
        from multitudes.cli import main
    except KeyboardInterrupt:
        sys.stderr.write("multitudes: interrupted while starting; nothing was written\n")
        sys.exit(130)
    main()


if __name__ == "__main__":
    run()
