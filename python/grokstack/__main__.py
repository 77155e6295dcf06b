"""`python -m grokstack ARGS...` runs the bundled `grokstack` binary with ARGS."""
import os
import subprocess
import sys

from ._cli import GrokstackError, find_binary


def main() -> None:
    try:
        binary = find_binary()
    except GrokstackError as error:
        sys.exit(f"error: {error}")
    if sys.platform == "win32":  # no exec there
        sys.exit(subprocess.call([binary, *sys.argv[1:]]))
    os.execv(binary, [binary, *sys.argv[1:]])


if __name__ == "__main__":
    main()
