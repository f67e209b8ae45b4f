"""The mail outbox: every email the portal sends is written in the
transaction of the change that causes it, and delivered after commit by a
sender that claims rows with a lease, retries with backoff, and never sends
a row twice (see :doc:`/mail`).

* :mod:`.queue`: writing rows, and asking for their delivery after commit;
* :mod:`.sender`: claiming and delivering rows (``flask portal send-mail``);
* :mod:`.worker`: the loop of ``flask portal worker``;
* :mod:`.login`: login links asked for on the static page.
"""

from .login import LOGIN_REQUEST, login_request
from .queue import MailBatch, dispatch, new_mail, outbox_of, queue_mail
from .sender import SendReport, backoff, deliver_due, deliver_ids, deliver_mail, sender_id
from .worker import WorkerTask, run_worker

__all__ = [
    "LOGIN_REQUEST",
    "MailBatch",
    "SendReport",
    "WorkerTask",
    "backoff",
    "deliver_due",
    "deliver_ids",
    "deliver_mail",
    "dispatch",
    "login_request",
    "new_mail",
    "outbox_of",
    "queue_mail",
    "run_worker",
    "sender_id",
]
