"""`python -m multitudes` and the `multitudes` command.

A signal that lands in the middle of an import leaves a half-initialised module behind (numpy's
"cannot load module more than once", "numpy has no 'add'"), and a handler that raises there may
be swallowed by the library being imported. So while the program loads, SIGINT and SIGTERM are
only noted; every module of the package (and so torch, numpy, click) is imported; then a noted
signal ends the program with one line, and `cli.main` installs the handlers of a running
program (they raise, and a run keeps its checkpoints). Nothing has been written before that.
The commands that only print (`presets`, `models`, `--help`) skip the loading.
"""

import signal
import sys

_noted: list[int] = []


def _note(signum, frame) -> None:
    _noted.append(signum)


def _load_everything() -> None:
    import importlib
    import pkgutil

    import multitudes

    for module in pkgutil.walk_packages(multitudes.__path__, "multitudes."):
        if not module.name.endswith("__main__"):
            importlib.import_module(module.name)


# Commands that write nothing and load little: not worth two seconds of loading torch first
LIGHT_COMMANDS, LIGHT_FLAGS = {"presets", "models"}, {"-h", "--help", "--version"}


def _light(argv: list[str]) -> bool:
    return not argv or argv[0] in LIGHT_COMMANDS or bool(LIGHT_FLAGS & set(argv))


def run() -> None:
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, _note)
    if not _light(sys.argv[1:]):
        _load_everything()
    from multitudes.cli.main import main

    if _noted:
        term = signal.SIGTERM in _noted
        sys.stderr.write(f"multitudes: {'terminated (SIGTERM)' if term else 'interrupted'} "
                         f"while starting; nothing was written\n")
        sys.exit(143 if term else 130)
    main()


if __name__ == "__main__":
    run()
