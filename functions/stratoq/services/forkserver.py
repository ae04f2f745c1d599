"""Imported by the poller's fork server only, as its first preload: it ignores SIGTERM.

`kill -TERM -PGID` (or a container runtime signalling the whole group) reaches the fork
server too. Its default action would end it, and its slots with it (they die with their
parent), killing running tasks that the poller is draining. The server must live exactly
as long as its poller: it exits on its own when the poller's end of its pipe closes.
"""

import signal

signal.signal(signal.SIGTERM, signal.SIG_IGN)
