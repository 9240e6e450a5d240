"""A real server in a background thread of this process: what `poco-rt demo` runs its replay against.

The same parts as `poco-rt serve` (create_app, uvicorn driving its lifespan), with the HTTP socket
bound first so that port 0 resolves before uvicorn starts. start and stop each have a timeout
and `started` says whether it is up, like every other part the server starts and stops.
"""

from __future__ import annotations

import threading
import time

from poco_rt.server.app import create_app
from poco_rt.server.serve import DrainingServer, bind_http, uvicorn_config
from poco_rt.server.settings import ServerSettings


class BackgroundServer:
    def __init__(self, settings: ServerSettings) -> None:
        self.settings = settings
        self.app = create_app(settings)
        self.runtime = self.app.state.runtime
        self._socket = bind_http(settings)
        host, port = self._socket.getsockname()[:2]
        self.url = f"http://{host}:{port}"
        config = uvicorn_config(self.app, settings, log_level="warning")
        self._server = DrainingServer(config, runtime=self.runtime)  # stops as `poco-rt serve` does: drained
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._socket]}, name="poco-rt-local-server", daemon=True
        )

    @property
    def started(self) -> bool:
        return self._server.started

    def start(self, timeout_s: float = 30.0) -> BackgroundServer:
        """Returns once the lifespan has run: bundle loaded, threads up, ZeroMQ sockets bound."""
        self._thread.start()
        deadline = time.monotonic() + timeout_s
        while not self._server.started:
            if not self._thread.is_alive():
                self._socket.close()
                if self._server.refusal is not None:
                    raise ValueError(f"the server cannot start: {self._server.refusal}") from self._server.refusal
                raise RuntimeError("the server stopped while starting (its log says why)")
            if time.monotonic() > deadline:
                self.stop()
                raise TimeoutError(f"the server did not start within {timeout_s} s")
            time.sleep(0.01)
        return self

    def stop(self, timeout_s: float = 15.0) -> None:
        self._server.should_exit = True
        if self._thread.is_alive():
            self._thread.join(timeout_s)
        self._socket.close()
        if self._thread.is_alive():
            raise TimeoutError(f"the server did not stop within {timeout_s} s")

    def __enter__(self) -> BackgroundServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
