"""``python -m notelm`` and the ``notelm`` script: the command line (`notelm.cli.main`).

Importing the command line takes a few tenths of a second; Ctrl-C then is one line and exit
130, as at any later moment, not a traceback from the middle of an import.
"""

from __future__ import annotations

import sys


def entry() -> None:
    try:
        from notelm.cli import main
    except KeyboardInterrupt:
        sys.stderr.write("notelm: interrupted\n")
        raise SystemExit(130) from None
    main()


if __name__ == "__main__":
    entry()
