"""Running a test's script in a fresh process with several (CPU) devices."""

from __future__ import annotations

import os
import subprocess
import sys


def run_on_devices(code: str, devices: int) -> str:
    """Run Python ``code`` in a new process that sees ``devices`` CPU devices; its stdout.

    Fails the calling test (with the process's output) if the script fails.
    """
    flags = os.environ.get("XLA_FLAGS", "") + f" --xla_force_host_platform_device_count={devices}"
    proc = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={**os.environ, "XLA_FLAGS": flags, "TF_CPP_MIN_LOG_LEVEL": "2"},
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    return proc.stdout
