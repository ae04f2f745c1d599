"""The moto patches of the embedded emulator."""

from __future__ import annotations

import threading

import moto.sqs.models as sqs_models
from moto.core import DEFAULT_ACCOUNT_ID

from stratoq.local.moto_patches import install


def test_delete_message_waits_for_the_queue_lock() -> None:
    # Stock moto rebuilds the message list on delete without the lock that sends append
    # under, so a message sent at that moment could vanish (seen: 8 of 20,000 tasks).
    install()
    backend = sqs_models.sqs_backends[DEFAULT_ACCOUNT_ID]["us-east-1"]
    backend.create_queue("patch-test")
    for i in range(3):
        backend.send_message("patch-test", f"m{i}")
    [message] = backend.receive_message("patch-test", 1, 0, 60)
    queue = backend.get_queue("patch-test")
    finished = threading.Event()

    def delete() -> None:
        backend.delete_message("patch-test", message.receipt_handle)
        finished.set()

    with queue._messages_lock:  # a send in progress holds this lock
        worker = threading.Thread(target=delete)
        worker.start()
        assert not finished.wait(0.3), "delete ran while a send held the queue lock"
    assert finished.wait(10)
    worker.join()
    assert len(queue._messages) == 2
    backend.delete_queue("patch-test")


def test_retention_check_still_refuses_expired_messages() -> None:
    install()
    backend = sqs_models.sqs_backends[DEFAULT_ACCOUNT_ID]["us-east-1"]
    backend.create_queue("retention-test", MessageRetentionPeriod="60")
    backend.send_message("retention-test", "old")
    queue = backend.get_queue("retention-test")
    [message] = queue._messages
    assert backend.is_message_valid_based_on_retention_period("retention-test", message)
    message.sent_timestamp -= 61_000
    assert not backend.is_message_valid_based_on_retention_period("retention-test", message)
    backend.delete_queue("retention-test")
