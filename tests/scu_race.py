"""A guard, in the test process only, against a race in pynetdicom's association requestor.

A requestor's `send_*()` pauses the association's reactor thread before it sends a request, then waits for
the response. The pause can come too late: if the reactor has just passed its checkpoint, it takes the next
DIMSE message off the queue itself, and when the peer answers fast (this project's receiver, on a loaded
machine) that is the response. The reactor drops it ("Received unexpected C-STORE service message") and
`send_*()` waits for the DIMSE timeout, then returns an empty status (pynetdicom issue 875 reports the
same with C-FIND). Seen in `make test` as a C-STORE with no `Status`. The guard hands such a response back
to the queue while a `send_*()` is waiting for it; everything else goes to pynetdicom as before.
"""

from __future__ import annotations

from pynetdicom.association import Association
from pynetdicom.dimse_primitives import DimseServiceType

_serve_request = Association._serve_request


def _serve_or_hand_back(self: Association, msg: DimseServiceType, context_id: int) -> None:
    waiting = not self._reactor_checkpoint.is_set()  # a send_*() has paused the reactor
    if self.is_requestor and waiting and not msg.is_valid_request:
        self.dimse.msg_queue.put((context_id, msg))
        return
    _serve_request(self, msg, context_id)


def install() -> None:
    Association._serve_request = _serve_or_hand_back  # type: ignore[method-assign]
