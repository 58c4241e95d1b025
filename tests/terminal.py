"""Run a command the way a person does: in a pseudo-terminal, answering its prompts, pressing Ctrl-C.

CI has no terminal, and rich switches progress bars and live displays off without one, so every
interactive path (the confirmation prompt, the progress bars, `status --watch`) is only exercised
under a pty.
"""

from __future__ import annotations

import errno
import fcntl
import os
import pty
import re
import select
import signal
import struct
import sys
import termios
import time
from dataclasses import dataclass, field
from pathlib import Path

_ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b[()][0-9A-Za-z]|\r")


@dataclass
class Terminal:
    """A child process on a pty of `columns` x `rows`; `screen` is everything it printed, ANSI removed."""

    pid: int
    fd: int
    raw: bytearray = field(default_factory=bytearray)
    code: int | None = None

    @property
    def screen(self) -> str:
        return _ANSI.sub("", self.raw.decode("utf-8", errors="replace"))

    def _read(self, timeout: float) -> None:
        ready, _, _ = select.select([self.fd], [], [], timeout)
        if ready:
            try:
                chunk = os.read(self.fd, 65536)
            except OSError as exc:  # EIO: the child closed its side
                if exc.errno != errno.EIO:
                    raise
                chunk = b""
            self.raw.extend(chunk)

    def expect(self, text: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.screen:
            if self._finished():
                raise AssertionError(f"exited with {self.code} before printing {text!r}:\n{self.screen[-3000:]}")
            if time.monotonic() > deadline:
                raise AssertionError(f"{text!r} not shown within {timeout} s:\n{self.screen[-3000:]}")
            self._read(0.1)

    def type(self, keys: str) -> None:
        os.write(self.fd, keys.encode())

    def interrupt(self) -> None:
        """Ctrl-C as typed: the terminal's line discipline turns it into SIGINT for the command."""
        self.type("\x03")

    def _finished(self) -> bool:
        if self.code is None:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.code = os.waitstatus_to_exitcode(status)
        return self.code is not None

    def wait(self, timeout: float = 120) -> int:
        deadline = time.monotonic() + timeout
        while not self._finished():
            if time.monotonic() > deadline:
                os.kill(self.pid, signal.SIGKILL)
                os.waitpid(self.pid, 0)
                raise AssertionError(f"still running after {timeout} s:\n{self.screen[-3000:]}")
            self._read(0.1)
        for _ in range(20):  # what it printed last
            before = len(self.raw)
            self._read(0.05)
            if len(self.raw) == before:
                break
        os.close(self.fd)
        return self.code


def run_in_terminal(args: list[str], *, env: dict[str, str], cwd: Path, columns: int = 100, rows: int = 40) -> Terminal:
    """`python -m mailctl ARGS` on a new pty, as its controlling terminal."""
    pid, fd = pty.fork()
    if pid == 0:  # the child: stdin, stdout and stderr are the terminal
        try:
            # A test run started in the background (CI, `cmd &`) ignores SIGINT, and an ignored
            # signal stays ignored across exec: give the command a terminal's usual Ctrl-C.
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            # A blocked signal also stays blocked across exec (a test process's threads may block
            # it): unblock it, or Ctrl-C would wait pending forever.
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
            os.chdir(cwd)
            os.execve(sys.executable, [sys.executable, "-m", "mailctl", *args], {**env, "TERM": "xterm-256color", "COLUMNS": str(columns), "LINES": str(rows)})
        finally:
            os._exit(127)
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))
    return Terminal(pid=pid, fd=fd)
