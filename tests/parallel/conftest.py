"""The parallel tests' simulated devices live in child processes (a device count is fixed when JAX starts):
`run_worker(name, *args)` runs one of the worker scripts here and returns the JSON object it prints."""

import json
import subprocess
import sys
from pathlib import Path

import pytest


def run_worker_script(name: str, *args: str, timeout: int = 900) -> dict:
    done = subprocess.run([sys.executable, str(Path(__file__).with_name(name)), *args], capture_output=True, text=True,
                          timeout=timeout)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout)


@pytest.fixture(scope="session")
def run_worker():
    return run_worker_script
