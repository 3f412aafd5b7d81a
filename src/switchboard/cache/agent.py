"""``CachedAgent``: any agent, answered from the response cache when that is safe.

Per turn, in order (see ``docs/cache.md``), one method per tier:

1. ``_request``: ``safety.lookup_refusal``: turns that may carry personal or call data
   skip the cache (``_passthrough``).
2. ``_exact``: one ``get`` for (agent digest, agent's previous line, caller's line).
   A hit replays the stored chunks, then the session sends ``content_complete``.
3. ``_single_flight``: if the same key is already being generated, wait (``wait_ms``) for
   that reply instead of asking the LLM again; fall through if it fails or is not stored.
4. ``_semantic_race`` (``semantic_tier.SemanticTier``): the agent's request is started
   *first*, then the caller's line is embedded (in a thread) and searched in the index; a
   candidate above the threshold that passes every guard is replayed and the agent's
   stream is closed. Otherwise the agent's reply is used as if the cache were not there.
5. ``_tiers``, the agent: on a miss the reply streams through untouched; once it has
   *finished* and passes ``safety.reply_refusal`` it is stored off the turn's path
   (``_settle``). A generation that is
   cancelled (barge-in) or closed early never reaches the store.

The backend failing is a miss (counted in ``switchboard_cache_errors``), never an error.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncGenerator, AsyncIterator, Coroutine
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from switchboard import tracing
from switchboard.agents.base import (
    Action,
    Agent,
    FromCache,
    NoCache,
    NoInterruption,
    ToolCallFinished,
    ToolCallStarted,
    Turn,
)
from switchboard.cache import keys
from switchboard.cache.base import CacheUnavailable, ResponseCache
from switchboard.cache.entry import Entry, VectorRecord, decode_entry, encode_entry, encode_vector
from switchboard.cache.metrics import CacheMetrics
from switchboard.cache.policy import CachePolicy
from switchboard.cache.safety import lookup_refusal, reply_refusal
from switchboard.cache.tasks import cancel, side_task
from switchboard.log import get_logger

if TYPE_CHECKING:
    from switchboard.cache.embedding import Embedder, Vector
    from switchboard.cache.semantic_tier import SemanticTier

DEFAULT_TTL_S = 3600.0
#: Why the ``semantic-cache`` extra is needed, in the one line that names it.
SEMANTIC_NEEDS = "the agent file's semantic cache tier (cache.semantic) needs the embedding model"
#: How long a key whose reply used a tool or an action skips the cache machinery.
UNCACHEABLE_MEMO_S = 60.0
_STICKY_REFUSALS = frozenset({"tool", "action", "agent_marked", "call_data"})
_END = object()
_log = get_logger("switchboard.cache")


@dataclass(slots=True)
class _Request:
    """A turn as the cache sees it."""

    key: str
    context: str
    caller: str
    #: why the turn goes straight to the agent (``None``: it may be served from cache)
    bypass: str | None


@dataclass(slots=True)
class _Reply:
    """What the agent's tier produced, and what it says about storing it."""

    chunks: list[str] = field(default_factory=list)
    #: the chunks served from the semantic tier instead
    served: list[str] | None = None
    used_tool: bool = False
    action: bool = False
    marked: bool = False
    finished: bool = False

    def note(self, action: Action) -> bool:
        """Record ``action``; ``True`` once the reply can no longer be stored."""
        if isinstance(action, ToolCallStarted | ToolCallFinished):
            self.used_tool = True
        elif not isinstance(action, NoInterruption):
            self.action = True
        return self.used_tool or self.action


@dataclass(slots=True)
class _Flight:
    """One key being generated; concurrent misses on it wait for ``done``."""

    done: asyncio.Event
    chunks: list[str] | None = None


class CachedAgent(Agent):
    """Wraps ``agent``; ``digest`` names its version (``keys.file_digest`` of its file)."""

    def __init__(
        self,
        agent: Agent,
        cache: ResponseCache,
        policy: CachePolicy,
        *,
        digest: str,
        ttl_s: float = DEFAULT_TTL_S,
        metrics: CacheMetrics | None = None,
        embedder: Embedder | None = None,
    ) -> None:
        self.agent = agent
        self.cache = cache
        self.policy = policy
        self.digest = digest
        self.ttl_s = policy.ttl_s or ttl_s
        self.metrics = metrics or CacheMetrics()
        self.needs_call_details = agent.needs_call_details
        self.cache_variables = agent.cache_variables
        self._flights: dict[str, _Flight] = {}
        self._background: set[asyncio.Task[Any]] = set()
        #: the semantic tier, only when the policy asks for it: it needs the embedding
        #: model's packages (the ``semantic-cache`` extra), the exact tier does not
        self._semantic: SemanticTier | None = (
            self._semantic_tier(embedder) if policy.semantic else None
        )
        self._warming: asyncio.Task[None] | None = None
        self._uncacheable: dict[str, float] = {}
        self._quiet_until = 0.0

    def _semantic_tier(self, embedder: Embedder | None) -> SemanticTier:
        from switchboard.extras import require

        require("semantic-cache", "onnxruntime", SEMANTIC_NEEDS)
        from switchboard.cache import embedding
        from switchboard.cache.semantic_tier import SemanticTier

        return SemanticTier(
            self.cache,
            self.policy,
            self.digest,
            self.metrics,
            embedder,
            get=self._get,
            forget=lambda key: self._spawn(self._forget(key)),
            unavailable=self._unavailable,
            load=lambda: embedding.Embedder(),  # looked up at load time: tests replace it
        )

    # ------------------------------------------------------------------ lifecycle

    @property
    def semantic_ready(self) -> bool:
        return self._semantic is not None and self._semantic.ready

    async def prepare(self) -> None:
        """Load the embedding model and the index now (else on first use, in the background)."""
        if self._semantic is not None:
            self._semantic.start()
            for task in (self._semantic.embedder_loading, self._semantic.index_loading):
                if task is not None:
                    await asyncio.shield(task)

    def start(self) -> None:
        """At server start: load the semantic tier in the background (the node serves calls
        meanwhile; they miss until then). ``warm.start_and_warm`` also warms the file's lines."""
        if self._semantic is not None:
            self._semantic.start()

    def warm_in_background(self, warming: Coroutine[Any, Any, None]) -> None:
        """Run the start-up warm-up aside; ``warmed`` waits for it, ``aclose`` cancels it."""
        if self._warming is None:
            # Not a store: ``flush`` (which warming itself awaits) must not wait for it.
            self._warming = side_task(warming)
        else:
            warming.close()

    async def warmed(self) -> None:
        """Wait for the start-up warm-up (if any) to finish."""
        if self._warming is not None:
            await asyncio.shield(self._warming)

    async def flush(self) -> None:
        """Wait until every store started so far has finished (warming, tests, shutdown)."""
        while self._background:
            await asyncio.gather(*list(self._background), return_exceptions=True)

    async def aclose(self) -> None:
        with contextlib.suppress(Exception):
            async with asyncio.timeout(2.0):
                await self.flush()
        if self._warming is not None:
            self._warming.cancel()
        if self._semantic is not None:
            self._semantic.close()
        await self.cache.close()
        await self.agent.aclose()

    # ------------------------------------------------------------------ the turn

    def respond(self, turn: Turn) -> AsyncIterator[str | Action]:
        """The turn from the first tier that can answer it safely: straight to the agent
        (bypass), the exact tier, a generation of the same key already under way, the
        semantic tier raced against the agent, the agent."""
        request = self._request(turn)
        if request.bypass is not None:
            self.metrics.bypassed.labels(request.bypass).inc()
            return self._passthrough(turn)
        return self._tiers(turn, request)

    def _request(self, turn: Turn) -> _Request:
        """The turn's cache key, and why it skips the cache, if it does."""
        agent_line = keys.previous_agent_line(turn.transcript)
        bypass = lookup_refusal(turn, agent_line, self.cache_variables)
        if bypass is None and not self.policy.active:
            bypass = "disabled"
        context = keys.context_line(agent_line, turn.dynamic_variables)
        caller = turn.last_user_text
        key = keys.exact_key(self.digest, context, keys.normalise(caller))
        if bypass is None and self._known_uncacheable(key):
            # Its last reply used a tool or an action: waiting on it or embedding it is
            # pure cost. Straight to the agent.
            bypass = "uncacheable_recently"
        return _Request(key, context, caller, bypass)

    async def _passthrough(self, turn: Turn) -> AsyncGenerator[str | Action, None]:
        """The agent alone; ``NoCache`` markers are for this class, not the session."""
        passing = self.agent.respond(turn)
        try:
            async for passed in passing:
                if not isinstance(passed, NoCache):
                    yield passed
        finally:
            await _aclose(passing)

    async def _tiers(self, turn: Turn, request: _Request) -> AsyncGenerator[str | Action, None]:
        started = time.perf_counter_ns()
        hit = await self._exact(request.key, started)
        if hit is None:
            hit = await self._single_flight(request.key)
        if hit is not None:
            yield hit[0]
            for chunk in hit[1]:
                yield chunk
            return
        flight = _Flight(asyncio.Event())
        self._flights[request.key] = flight
        inner = self.agent.respond(turn)
        reply = _Reply()
        lookup: asyncio.Task[tuple[Vector | None, Entry | None]] | None = None
        try:
            item, served, lookup = await self._semantic_race(inner, request, started)
            if served is not None:
                reply.served = served.chunks
                yield FromCache("semantic")
                for chunk in served.chunks:
                    yield chunk
                return
            while item is not _END:
                if isinstance(item, str):
                    reply.chunks.append(item)
                    yield item
                elif isinstance(item, NoCache):
                    reply.marked = True
                elif isinstance(item, Action):
                    if reply.note(item) and not flight.done.is_set():
                        flight.done.set()  # not storable: release the waiters now
                    yield item
                item = await _next(inner)
            reply.finished = True
        finally:
            if not reply.finished and lookup is not None:
                await cancel(lookup)
            with contextlib.suppress(Exception):
                await _aclose(inner)
            self._settle(turn, request, flight, reply, lookup)

    async def _exact(self, key: str, started: int) -> tuple[FromCache, list[str]] | None:
        """The exact tier: one ``get`` for the key."""
        if not self.policy.exact:
            return None
        if tracing.ENABLED:
            with tracing.child(None, "cache.lookup", **{"switchboard.cache.tier": "exact"}) as span:
                entry = await self._get(key)
                if span is not None:
                    span.set_attribute("switchboard.cache.hit", entry is not None)
        else:
            entry = await self._get(key)
        if entry is None:
            self.metrics.miss("exact")
            return None
        self.metrics.hit("exact", _since(started))
        return FromCache("exact"), entry.chunks

    async def _single_flight(self, key: str) -> tuple[FromCache, list[str]] | None:
        """The reply of the same key being generated right now, if it comes in time."""
        flight = self._flights.get(key)
        if flight is None:
            return None
        shared = await self._wait(flight)
        if not shared:
            return None
        self.metrics.hits.labels("single_flight").inc()
        return FromCache("single_flight"), shared

    async def _semantic_race(
        self, inner: AsyncIterator[str | Action], request: _Request, started: int
    ) -> tuple[object, Entry | None, asyncio.Task[tuple[Vector | None, Entry | None]] | None]:
        """The semantic tier: (the agent's first item, a close entry to serve instead, the
        lookup task, whose vector a store reuses). The agent's request goes out first and
        the lookup runs beside it; a hit that comes first closes the agent's stream."""
        semantic = self._semantic
        racing = False
        if semantic is not None:
            semantic.start()
            racing = semantic.ready and semantic.index.has(keys.context_key(request.context))
        if semantic is None or not racing:
            # Nothing to race: the agent's first item directly, no task, no loop turn.
            return await _next(inner), None, None
        first = side_task(_next(inner))
        lookup = side_task(semantic.lookup(request.context, request.caller))
        try:
            await asyncio.wait({first, lookup}, return_when=asyncio.FIRST_COMPLETED)
            if lookup.done() and not first.done():
                hit = lookup.result()[1]
                if hit is not None:
                    await cancel(first)
                    await _aclose(inner)
                    self.metrics.hit("semantic", _since(started))
                    return _END, hit, lookup
                self.metrics.miss("semantic")
            return await first, None, lookup
        except BaseException:
            await cancel(first)
            await cancel(lookup)
            raise

    def _settle(
        self,
        turn: Turn,
        request: _Request,
        flight: _Flight,
        reply: _Reply,
        lookup: asyncio.Task[tuple[Vector | None, Entry | None]] | None,
    ) -> None:
        """After the agent's tier: store a finished, safe reply off the turn's path, count
        why one is not stored, and hand the reply to the turns waiting on this key."""
        stored = reply.served
        if reply.served is None and reply.finished:
            reason = reply_refusal(
                reply.chunks,
                used_tool=reply.used_tool,
                action=reply.action,
                marked=reply.marked,
                variables=turn.dynamic_variables,
                call=turn.call,
                earlier=[u.content for u in turn.transcript[:-1] if u.role != "agent"],
            )
            if reason is None:
                stored = reply.chunks
                entry = Entry(
                    digest=self.digest,
                    caller=request.caller,
                    context=request.context,
                    chunks=reply.chunks,
                )
                self._spawn(self._store(request.key, entry, lookup))
            else:
                self.metrics.not_stored.labels(reason).inc()
                if reason in _STICKY_REFUSALS:
                    self._remember_uncacheable(request.key)
        elif reply.served is None:
            self.metrics.not_stored.labels("cancelled").inc()
        if self._flights.get(request.key) is flight:
            del self._flights[request.key]
        flight.chunks = stored
        flight.done.set()

    def _known_uncacheable(self, key: str) -> bool:
        until = self._uncacheable.get(key)
        if until is None:
            return False
        if until < time.monotonic():
            del self._uncacheable[key]
            return False
        return True

    def _remember_uncacheable(self, key: str) -> None:
        if len(self._uncacheable) >= 10_000:
            self._uncacheable.clear()
        self._uncacheable[key] = time.monotonic() + UNCACHEABLE_MEMO_S

    async def _wait(self, flight: _Flight) -> list[str] | None:
        try:
            async with asyncio.timeout(self.policy.wait_ms / 1000):
                await flight.done.wait()
        except TimeoutError:
            return None
        return flight.chunks

    # ------------------------------------------------------------------ backend

    async def _get(self, key: str) -> Entry | None:
        try:
            data = await self.cache.get(key)
        except CacheUnavailable as exc:
            self._unavailable(exc)
            return None
        if data is None:
            return None
        entry = decode_entry(data, self.digest)
        if entry is None:
            self.metrics.errors.labels("corrupt").inc()
            _log.warning("dropped a corrupt or foreign cache entry", key=key)
            self._spawn(self._forget(key))
        return entry

    async def _forget(self, key: str) -> None:
        if self._semantic is not None:
            self._semantic.index.remove(key)
        with contextlib.suppress(CacheUnavailable):
            await self.cache.delete(key)
            await self.cache.delete_vector(self.digest, key)

    async def _store(
        self,
        key: str,
        entry: Entry,
        lookup: asyncio.Task[tuple[Vector | None, Entry | None]] | None,
    ) -> None:
        try:
            await self.cache.put(key, encode_entry(entry), self.ttl_s)
            self.metrics.stored.inc()
            semantic = self._semantic
            if semantic is None or semantic.embedder is None:
                return
            vector = None
            if lookup is not None:
                with contextlib.suppress(BaseException):
                    vector = (await lookup)[0]
            if vector is None:
                vector = await semantic.embed(entry.caller)
            if vector is None:
                return  # the model was busy: this entry serves the exact tier only
            context = keys.context_key(entry.context)
            semantic.index.add(context, key, vector)
            record = VectorRecord(context=context, vector=vector.tobytes())
            await self.cache.put_vector(self.digest, key, encode_vector(record), self.ttl_s)
        except CacheUnavailable as exc:
            self._unavailable(exc)

    def _unavailable(self, exc: CacheUnavailable) -> None:
        self.metrics.errors.labels("unavailable").inc()
        now = time.monotonic()
        if now >= self._quiet_until:  # one line per 10 s, not one per turn
            self._quiet_until = now + 10.0
            _log.warning("response cache unavailable; turns go to the agent", error=str(exc))

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)


async def _aclose(items: AsyncIterator[str | Action]) -> None:
    aclose = getattr(items, "aclose", None)
    if aclose is not None:
        await aclose()


async def _next(items: AsyncIterator[str | Action]) -> object:
    return await anext(items, _END)


def _since(started_ns: int) -> float:
    return (time.perf_counter_ns() - started_ns) / 1e9
