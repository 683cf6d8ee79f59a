"""The signals that stop a run, and what a child process does about them.

A conversion blocks SIGTERM and SIGINT in its threads and takes them in one thread of its own
(``converters.cleanup.exit_cleanly_on_signals``). A process inherits its parent's blocked signals, so a child
started meanwhile (an isolated load probe, an isolated benchmark) unblocks them first: otherwise a stop or a
Ctrl-C would leave it running after its parent is gone.
"""

from __future__ import annotations

import signal

#: systemd and Docker stop with SIGTERM, the terminal with SIGINT
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def unblock_stop_signals() -> None:
    """Let :data:`STOP_SIGNALS` reach this thread (and the threads and processes it starts) again."""
    if hasattr(signal, "pthread_sigmask"):
        signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
