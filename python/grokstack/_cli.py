"""Finding and running the `grokstack` binary that the wheel installs next to Python's scripts."""
from __future__ import annotations

import codecs
import os
import signal
import subprocess
import sys
import sysconfig
import threading
from pathlib import Path
from typing import IO, List, Optional, Sequence

__all__ = ["GrokstackError", "find_binary", "run"]

#: Points at another binary, e.g. target/release/grokstack while developing.
BIN_ENV = "GROKSTACK_BIN"


class GrokstackError(RuntimeError):
    """A `grokstack` command failed. The message is the CLI's own error (less its `error: `), so
    a bad key is named exactly as on the command line; `command`, `returncode` and `stderr` (all
    the CLI wrote there) hold the rest."""

    def __init__(self, message: str, command: Sequence[str] = (), returncode: int = 1, stderr: str = ""):
        super().__init__(message)
        self.command = list(command)
        self.returncode = returncode
        self.stderr = stderr


def find_binary() -> str:
    """The path of the `grokstack` binary: $GROKSTACK_BIN, else where pip put the wheel's scripts
    (the environment's scripts folder, or the user's for `pip install --user`)."""
    override = os.environ.get(BIN_ENV)
    if override:
        if not os.access(override, os.X_OK):
            raise GrokstackError(f"${BIN_ENV} = {override} is not an executable file")
        return override
    name = "grokstack.exe" if sys.platform == "win32" else "grokstack"
    folders = [sysconfig.get_path("scripts")]
    preferred = getattr(sysconfig, "get_preferred_scheme", None)  # Python 3.10+
    user_scheme = preferred("user") if preferred else f"{os.name}_user"
    if user_scheme in sysconfig.get_scheme_names():
        folders.append(sysconfig.get_path("scripts", scheme=user_scheme))
    for folder in folders:
        candidate = Path(folder) / name
        if candidate.is_file():
            return str(candidate)
    raise GrokstackError(
        f"the grokstack binary is not in {' or '.join(folders)}: install the grokstack wheel "
        f"(make wheel; pip install target/wheels/grokstack-*.whl) or set ${BIN_ENV}"
    )


def run(args: Sequence[object], echo_stdout: bool = True) -> str:
    """Run `grokstack ARGS...`, forwarding its stderr (and its stdout, unless `echo_stdout` is
    False) to sys.stderr and sys.stdout as they come, so that training progress shows in a
    terminal and in a notebook, whose cells capture sys.stdout/sys.stderr but not the process's
    file descriptors. Returns its stdout; raises GrokstackError with the CLI's error message if
    it fails."""
    command = [find_binary(), *map(str, args)]
    # Its own session: a terminal's Ctrl-C reaches only Python, which passes it on exactly once
    # (the CLI checkpoints on the first SIGINT and quits at once on a second).
    child = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    stdout: List[bytes] = []
    stderr: List[bytes] = []
    pumps = [
        threading.Thread(target=_forward, args=(child.stdout, sys.stdout if echo_stdout else None, stdout), daemon=True),
        threading.Thread(target=_forward, args=(child.stderr, sys.stderr, stderr), daemon=True),
    ]
    for pump in pumps:
        pump.start()
    interrupted = False
    while True:
        # Waiting in short slices: the OS may hand SIGINT to any thread, and Python raises
        # KeyboardInterrupt only once the main thread runs again, which a blocking read or
        # wait would put off until the child ends.
        try:
            returncode = child.wait(timeout=0.1)
            break
        except subprocess.TimeoutExpired:
            continue
        except KeyboardInterrupt:
            # Ctrl-C, or a notebook's interrupt: the CLI checkpoints, says how to resume and
            # stops; its last words are still forwarded.
            child.send_signal(signal.SIGINT)
            interrupted = True
    for pump in pumps:
        pump.join()
    if interrupted:
        raise KeyboardInterrupt
    err = b"".join(stderr).decode(errors="replace")
    if returncode != 0:
        raise GrokstackError(_error_message(err, returncode), command, returncode, err)
    return b"".join(stdout).decode(errors="replace")


def _forward(source: IO[bytes], sink: Optional[IO[str]], kept: List[bytes]) -> None:
    # read1 returns what is there (a progress line ends in '\r', not '\n'), never waiting for
    # more; the incremental decoder keeps a UTF-8 character split between two reads whole.
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    while True:
        chunk = source.read1(65536)  # type: ignore[attr-defined]
        kept.append(chunk)
        if sink is not None:
            sink.write(decoder.decode(chunk, final=not chunk))
            sink.flush()
        if not chunk:
            break


def _error_message(stderr: str, returncode: int) -> str:
    lines = stderr.rstrip().splitlines()
    starts = [i for i, line in enumerate(lines) if line.startswith("error:")]
    if starts:
        return "\n".join(lines[starts[-1] :])[len("error:") :].strip()
    tail = "\n".join(lines[-5:])
    return f"grokstack exited with status {returncode}" + (f": {tail}" if tail else "")
