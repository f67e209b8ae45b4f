"""``flask portal worker``: a loop that keeps delivering the outbox, and
any other due work the merchant adds to it.

Each round runs every task once; a round in which no task did anything is
followed by a wait of ``CUSTOMER_PORTAL_MAIL_POLL_INTERVAL`` seconds.
SIGTERM (and SIGINT) end the loop once the current task is done: a row
being sent is sent and recorded first, so a deploy that stops the worker
loses nothing and sends nothing twice.

Other due work joins the loop as a task: a function given the portal's
state that returns how much it did (0: nothing was due), registered with
:meth:`CustomerPortal.worker_task <flask_customer_portal.CustomerPortal.worker_task>`.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from types import FrameType

from ..state import PortalState
from .sender import deliver_due, sender_id

__all__ = ["WorkerTask", "deliver_mail_task", "run_worker"]

logger = logging.getLogger("flask_customer_portal.worker")

#: One kind of due work: given the portal's state, does what is due and
#: returns how much (0: nothing was due).
WorkerTask = Callable[[PortalState], int]


def deliver_mail_task(owner: str, stop: threading.Event) -> WorkerTask:
    """The outbox as a worker task: due rows, one at a time, until none is
    due or the worker is asked to stop."""

    def deliver(state: PortalState) -> int:
        done = 0
        while not stop.is_set():
            report = deliver_due(state, limit=1, owner=owner)
            if report.attempted + len(report.discarded) == 0:
                break
            done += 1
        return done

    return deliver


@contextmanager
def _stop_on_signals(stop: threading.Event) -> Iterator[None]:
    """SIGTERM and SIGINT set ``stop`` (in the main thread only: elsewhere
    Python cannot take signals, and the caller sets ``stop`` itself)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handle(signum: int, frame: FrameType | None) -> None:
        logger.info(
            "Customer portal worker: %s received, stopping after the current task",
            signal.Signals(signum).name,
        )
        stop.set()

    previous = {signum: signal.signal(signum, handle) for signum in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def run_worker(
    state: PortalState,
    *,
    stop: threading.Event | None = None,
    poll_interval: float | None = None,
    tasks: Sequence[WorkerTask] = (),
    close_session: Callable[[], None] | None = None,
    max_rounds: int | None = None,
) -> int:
    """Run the worker loop in the current app context until ``stop`` is
    set (SIGTERM, SIGINT) or ``max_rounds`` rounds ran; returns how much
    work was done. ``tasks`` run after the outbox's delivery, each round.
    ``close_session`` (the store's ``close_db_session``) runs after every
    round, so no transaction stays open while the worker sleeps."""
    stop = stop or threading.Event()
    interval = state.config.mail.poll_interval if poll_interval is None else poll_interval
    owner = sender_id()
    every = [deliver_mail_task(owner, stop), *state.hooks.worker_tasks, *tasks]
    total = 0
    rounds = 0
    with _stop_on_signals(stop):
        while not stop.is_set():
            done = 0
            for task in every:
                if stop.is_set():
                    break
                try:
                    done += task(state)
                except Exception:
                    # One failing task (the database away for a moment) must
                    # not end the loop: the next round tries again.
                    logger.exception("Customer portal worker task %s failed", getattr(task, "__name__", task))
            total += done
            rounds += 1
            if close_session is not None:
                close_session()
            if max_rounds is not None and rounds >= max_rounds:
                break
            if not done:
                stop.wait(interval)
    return total
