"""The fake served by uvicorn on a loopback port: in a background thread for tests
(``FakeLLMServer``), or in the foreground as ``python -m switchboard.testing.fake_llm``
(``main``) for the demo and the benchmarks.
"""

from __future__ import annotations

import argparse
import socket
import threading

import uvicorn

from switchboard.testing.fake_llm.app import FakeLLM
from switchboard.testing.fake_llm.request import DEFAULT_REPLY, FakeLLMConfig
from switchboard.testing.fake_llm.stats import FakeLLMStats


class FakeLLMServer:
    """A ``FakeLLM`` served by uvicorn on a loopback port, in a background thread.

    The socket is bound and listening before ``start`` returns, so clients can connect at
    once (the kernel queues them until uvicorn accepts): no start-up race, no polling.
    """

    def __init__(
        self, config: FakeLLMConfig | None = None, host: str = "127.0.0.1", port: int = 0
    ) -> None:
        self.app = FakeLLM(config)
        self._sock = _listen(host, port)
        self.host, self.port = self._sock.getsockname()[:2]
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        """What ``OPENAI_BASE_URL`` should be set to."""
        return f"{self.root_url}/v1"

    @property
    def root_url(self) -> str:
        """Where ``/stats``, ``/stats/reset`` and ``/config`` live."""
        return f"http://{self.host}:{self.port}"

    @property
    def stats(self) -> FakeLLMStats:
        return self.app.stats

    @property
    def config(self) -> FakeLLMConfig:
        return self.app.config

    @config.setter
    def config(self, value: FakeLLMConfig) -> None:
        self.app.config = value

    def start(self) -> FakeLLMServer:
        self._server = uvicorn.Server(uvicorn_config(self.app))
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._sock]}, daemon=True
        )
        self._thread.name = f"fake-llm-{self.port}"
        self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        if self._server is not None and self._thread is not None:
            self._server.should_exit = True
            self._thread.join(timeout)
            if self._thread.is_alive():
                raise RuntimeError("fake LLM server did not stop")
        self._sock.close()

    def __enter__(self) -> FakeLLMServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def uvicorn_config(app: FakeLLM, loop: str = "asyncio") -> uvicorn.Config:
    """Quiet uvicorn settings: no access log, no logging reconfiguration, quick shutdown."""
    return uvicorn.Config(
        app,
        loop=loop,
        lifespan="off",
        access_log=False,
        log_config=None,
        log_level="warning",
        timeout_graceful_shutdown=2,
        backlog=2048,
    )


def _listen(host: str, port: int) -> socket.socket:
    # proto=IPPROTO_TCP matters: asyncio sets TCP_NODELAY on accepted sockets only when it
    # sees TCP there. With proto 0, Nagle holds the body behind the headers until the
    # client's delayed ACK, adding ~40 ms to every response.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind((host, port))
    sock.listen(2048)
    return sock


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m switchboard.testing.fake_llm",
        description="Serve a fake OpenAI-compatible chat completions API.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--ttft-ms", type=float, default=0.0)
    parser.add_argument("--token-ms", type=float, default=0.0)
    parser.add_argument("--reply", default=DEFAULT_REPLY)
    parser.add_argument("--tokens", type=int, default=None)
    parser.add_argument("--model", default="fake-llm")
    options = parser.parse_args(argv)
    config = FakeLLMConfig(
        ttft_ms=options.ttft_ms,
        token_ms=options.token_ms,
        reply=options.reply,
        tokens=options.tokens,
        model=options.model,
    )
    app = FakeLLM(config)
    sock = _listen(options.host, options.port)
    host, port = sock.getsockname()[:2]
    print(f"fake-llm ready base_url=http://{host}:{port}/v1", flush=True)
    try:
        uvicorn.Server(uvicorn_config(app, loop="auto")).run(sockets=[sock])
    finally:
        sock.close()
