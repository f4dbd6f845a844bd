"""Bounded hand-over between the decode, restore and encode threads."""
import queue
import threading

DONE = object()  # end of a stream of items


def get(q):
    """``q.get()`` that never waits without a timeout. Ctrl-C/SIGTERM raise KeyboardInterrupt in
    the main thread wherever it is, also inside ``Condition.notify`` of a queue, which can leave a
    stale waiter behind: the next notification then wakes nobody and a plain ``get()`` in another
    thread sleeps forever (seen: a SIGTERM at start-up hung ``restore run``). Polling survives it."""
    while True:
        try:
            return q.get(timeout=0.1)
        except queue.Empty:
            continue


def put(q, item, stop):
    """Put with back-pressure; give up (False) once ``stop`` is set so threads never hang."""
    while not stop.is_set():
        try:
            q.put(item, timeout=0.1)
            return True
        except queue.Full:
            continue
    return False


def prefetched(iterable, queue_size=8):
    """Run ``iterable`` (e.g. image decoding) on a thread, at most ``queue_size`` items ahead."""
    q, stop, failure = queue.Queue(maxsize=queue_size), threading.Event(), []

    def produce():
        try:
            for item in iterable:
                if not put(q, item, stop):
                    return
        except BaseException as e:  # re-raised in the consumer
            failure.append(e)
        put(q, DONE, stop)

    thread = threading.Thread(target=produce, name="prefetch", daemon=True)
    thread.start()
    try:
        while True:
            item = get(q)
            if item is DONE:
                break
            yield item
        if failure:
            raise failure[0]
    finally:
        stop.set()
        thread.join()
