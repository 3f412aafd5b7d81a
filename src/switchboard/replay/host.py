"""An agent file served in-process, for ``switchboard replay --agent-file``.

A real switchboard server (the same ``SwitchboardApp`` and call socket as ``serve``) on
a free loopback port, in the replay's own event loop. A socket-less path would skip the
very code a replay should exercise (frame decoding, the session's supersede and
completion rules); a loopback socket costs ~100 µs per frame and keeps the replay
honest. The agent is wrapped in the response cache its file asks for, as ``serve`` does.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import uvicorn

from switchboard.ports import bind_listener

#: how long the server may take to stop after the replay
STOP_TIMEOUT_S = 10.0


@contextlib.asynccontextmanager
async def hosted_agent(agent_file: Path) -> AsyncIterator[str]:
    """Serve ``agent_file`` on 127.0.0.1 and yield the base URL of its call socket.
    Raises ``AgentFileError`` (or ``ValueError``) for an unusable file, before binding."""
    from switchboard.agents.loader import load_agent
    from switchboard.cache.build import with_cache
    from switchboard.config import Settings
    from switchboard.server.app import SwitchboardApp
    from switchboard.server.run import uvicorn_config

    settings = Settings(host="127.0.0.1", port=0, agent_file=agent_file, log_level="warning")
    agent = with_cache(load_agent(agent_file), settings)
    listener = bind_listener("127.0.0.1", 0)
    listener.listen(1024)
    port = listener.getsockname()[1]
    settings = settings.model_copy(update={"port": port})
    app = SwitchboardApp(settings, agent)
    server = uvicorn.Server(uvicorn_config(app, settings))
    task = asyncio.create_task(server.serve(sockets=[listener]))
    try:
        yield f"ws://127.0.0.1:{port}/llm-websocket"
    finally:
        server.should_exit = True
        try:
            await asyncio.wait_for(task, STOP_TIMEOUT_S)
        finally:
            listener.close()
