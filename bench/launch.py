"""``python -m bench.launch RESULT.json CMD...``: run CMD, then write its wall time, exit
code and peak RSS to RESULT.json.

Why a launcher: Linux charges a child's ``ru_maxrss`` with the memory of the process it
was forked from (the copy it runs in until ``exec``). Forked straight from the benchmark,
which holds TensorFlow and models by then, every child would look at least as big as the
benchmark. Forked from this small process, the figure is the command's own. SIGTERM and
SIGINT are passed on to the command.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time


def main(argv: list[str]) -> int:
    if len(argv) < 2:
        sys.stderr.write("usage: python -m bench.launch RESULT.json CMD...\n")
        return 2
    result_path, cmd = argv[0], argv[1:]
    start = time.perf_counter()
    proc = subprocess.Popen(cmd)
    with open(result_path, "w") as f:  # the command's pid, until the final figures replace it
        json.dump({"pid": proc.pid}, f)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda signum, _frame: proc.send_signal(signum))
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - start
    code = os.waitstatus_to_exitcode(status)
    with open(result_path, "w") as f:
        json.dump({"pid": proc.pid, "seconds": seconds, "exit_code": code, "peak_rss_bytes": usage.ru_maxrss * 1024}, f)
    return 0 if code == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
