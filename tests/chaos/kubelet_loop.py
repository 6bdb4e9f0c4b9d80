"""A kubelet stand-in in a background thread: every workload pod succeeds soon after it appears."""

from __future__ import annotations

import threading
from types import TracebackType

from kubernetes import client

from tests.kubelet import finish_workloads


class KubeletLoop:
    def __init__(self, api: client.ApiClient, namespace: str, interval: float = 0.3) -> None:
        self.core = client.CoreV1Api(api)
        self.namespace = namespace
        self.interval = interval
        self.ended = 0
        self.errors: list[Exception] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.ended += finish_workloads(self.core, self.namespace)
            except client.ApiException as error:  # e.g. the API server restarting: try again
                self.errors.append(error)
            except Exception as error:  # urllib3's connection errors while it is down
                self.errors.append(error)

    def __enter__(self) -> KubeletLoop:
        self._thread.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._stop.set()
        self._thread.join()
