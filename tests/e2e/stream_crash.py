"""`fetcher stream` that SIGKILLs itself between a batch's write and its commit.

    python -m tests.e2e.stream_crash N stream --group G ...

The N-th batch that has offsets to commit is applied to the store (EventWriter.push
returned) and then, instead of committing, the process kills itself with SIGKILL: the
exact moment at-least-once delivery must survive. The code is the real consumer's; only
the commit is wrapped.
"""

from __future__ import annotations

import os
import signal
import sys
from typing import Any

from fetcher.cli import main
from fetcher.stream import StreamConsumer


def _arm(batches: int) -> None:
    commit = StreamConsumer._commit_pending
    seen = 0

    def commit_or_die(self: StreamConsumer) -> Any:
        nonlocal seen
        if self._pending:
            seen += 1
            if seen == batches:
                print(f"stream_crash: SIGKILL before committing batch {seen}", flush=True)
                os.kill(os.getpid(), signal.SIGKILL)
        return commit(self)

    StreamConsumer._commit_pending = commit_or_die  # type: ignore[method-assign]


if __name__ == "__main__":
    _arm(int(sys.argv[1]))
    sys.exit(main(sys.argv[2:]))
