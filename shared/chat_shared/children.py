"""Stopping the local servers that `make run`, the tests and the bench start as children."""

from __future__ import annotations

import os
import signal
import subprocess


def terminate(process: subprocess.Popen[bytes], timeout: float) -> None:
    """SIGTERM and wait; SIGKILL if the server has not exited within ``timeout``."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            kill(process)


def kill(process: subprocess.Popen[bytes]) -> None:
    """SIGKILL, as a crash would, and reap the process."""
    if process.poll() is None:
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
