"""A server's first seconds (issue 29): a status line asked while another thread still imports
a heavy module (Ray by the warm-up, TensorFlow by a custom model's Policy map) never sees the
module half made. (The engine's own calls are tested in ``test_cluster.py``.)"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

_TENSORFLOW = """
import threading
from pages.common import tensorflow_line

imported = threading.Event()
lines, errors = set(), []

def load():
    try:
        import tensorflow
    finally:
        imported.set()

threading.Thread(target=load).start()
while not imported.is_set():
    try:
        lines.add(tensorflow_line())
    except Exception as exc:
        errors.append(f"{type(exc).__name__}: {exc}")
print(len(errors), sorted(lines), errors[:1])
"""


def test_the_tensorflow_line_while_tensorflow_is_imported():
    done = subprocess.run([sys.executable, "-c", _TENSORFLOW], cwd=REPO, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-3000:]
    errors, rest = done.stdout.split(" ", 1)
    assert errors == "0", rest
    assert "is loading" in rest, "the line was asked while the import was under way"
