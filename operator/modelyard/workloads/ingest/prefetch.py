"""Runs an iterator on a background thread, a few items ahead of its consumer.

pyarrow's streaming CSV and JSON readers decode a block in the thread that asks for it, with
the GIL released. Asking from a thread of their own lets that decoding overlap with what the
consumer does with the previous block (hashing, statistics), on a second core.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from typing import TypeVar

T = TypeVar("T")

_DONE = object()


def prefetch(items: Iterator[T], depth: int = 4) -> Iterator[T]:
    """`items`, produced up to `depth` ahead; the producer's exception is raised here."""
    ready: queue.Queue[object] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def offer(item: object) -> bool:
        while not stop.is_set():
            try:
                ready.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not offer(item):
                    break
            else:
                offer(_DONE)
        except BaseException as error:  # handed to the consumer, which raises it
            offer(error)
        finally:
            close = getattr(items, "close", None)
            if close is not None:
                close()  # a generator's cleanup (open streams) runs in its own thread

    producer = threading.Thread(target=produce, name="prefetch", daemon=True)
    producer.start()
    try:
        while True:
            item = ready.get()
            if item is _DONE:
                return
            if isinstance(item, BaseException):
                raise item
            yield item  # type: ignore[misc]
    finally:
        stop.set()
        producer.join()
