"""``CachedAgent``: any agent, answered from the response cache when that is safe.

Per turn, in order (see ``docs/cache.md``):

1. ``safety.lookup_refusal``: turns that may carry personal or call data skip the cache.
2. Exact tier: one ``get`` for (agent digest, agent's previous line, caller's line).
   A hit replays the stored chunks, then the session sends ``content_complete``.
3. Single-flight: if the same key is already being generated, wait (``wait_ms``) for
   that reply instead of asking the LLM again; fall through if it fails or is not stored.
4. Semantic tier: the agent's request is started *first*, then the caller's line is
   embedded (in a thread) and searched in the index; a candidate above the threshold that
   passes every guard is replayed and the agent's stream is closed. Otherwise the agent's
   reply is used as if the cache were not there.
5. On a miss the reply streams through untouched; once it has *finished* and passes
   ``safety.reply_refusal`` it is stored off the turn's path. A generation that is
   cancelled (barge-in) or closed early never reaches the store.

The backend failing is a miss (counted in ``switchboard_cache_errors``), never an error.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncGenerator, AsyncIterator, Coroutine
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

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
from switchboard.cache.embedding import Embedder, EmbeddingUnavailable, Vector
from switchboard.cache.entry import Entry, VectorRecord, decode_entry, encode_entry, encode_vector
from switchboard.cache.guards import guard_refusal
from switchboard.cache.index import SemanticIndex
from switchboard.cache.metrics import CacheMetrics
from switchboard.cache.policy import CachePolicy
from switchboard.cache.safety import lookup_refusal, reply_refusal
from switchboard.log import get_logger

DEFAULT_TTL_S = 3600.0
#: How often the semantic index re-reads the backend (entries other nodes stored).
INDEX_REFRESH_S = 30.0
#: How long a key whose reply used a tool or an action skips the cache machinery.
UNCACHEABLE_MEMO_S = 60.0
_STICKY_REFUSALS = frozenset({"tool", "action", "agent_marked", "call_data"})
_END = object()
_log = get_logger("switchboard.cache")


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
        self._index = SemanticIndex()
        self._index_loaded_at: float | None = None
        self._index_loading: asyncio.Task[None] | None = None
        self._embedder = embedder
        self._embedder_failed = not policy.semantic
        self._embedder_loading: asyncio.Task[None] | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._warming: asyncio.Task[None] | None = None
        self._uncacheable: dict[str, float] = {}
        self._quiet_until = 0.0
        self._embedding = False

    # ------------------------------------------------------------------ lifecycle

    @property
    def semantic_ready(self) -> bool:
        return self._embedder is not None and self._index_loaded_at is not None

    async def prepare(self) -> None:
        """Load the embedding model and the index now (else on first use, in the background)."""
        if self.policy.semantic:
            self._start_semantic()
            for task in (self._embedder_loading, self._index_loading):
                if task is not None:
                    await asyncio.shield(task)

    def start(self) -> None:
        """At server start: load the semantic tier and warm the file's ``warm`` lines, in the
        background (the node serves calls meanwhile; they miss until then)."""
        if self.policy.semantic:
            self._start_semantic()
        if self.policy.warm and self._warming is None:
            # Not a store: ``flush`` (which warming itself awaits) must not wait for it.
            self._warming = _task(self._warm_from_policy())

    async def _warm_from_policy(self) -> None:
        from switchboard.cache.warm import warm

        try:
            report = await warm(self, self.policy.warm)
        except Exception:
            _log.exception("cache warm-up failed")
            return
        _log.info(
            "cache warmed",
            asked=report.asked,
            stored=report.stored,
            already=report.already,
            skipped=dict(report.skipped),
        )

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
        for task in (self._embedder_loading, self._index_loading, self._warming):
            if task is not None:
                task.cancel()
        await self.cache.close()
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
        await self.agent.aclose()

    # ------------------------------------------------------------------ the turn

    async def respond(self, turn: Turn) -> AsyncGenerator[str | Action, None]:
        started = time.perf_counter_ns()
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
        if bypass is not None:
            self.metrics.bypassed.labels(bypass).inc()
            passing = self.agent.respond(turn)
            try:
                async for passed in passing:
                    if not isinstance(passed, NoCache):
                        yield passed
            finally:
                await _aclose(passing)
            return
        if self.policy.exact:
            entry = await self._get(key)
            if entry is not None:
                self.metrics.hit("exact", _since(started))
                yield FromCache("exact")
                for chunk in entry.chunks:
                    yield chunk
                return
            self.metrics.miss("exact")
        flight = self._flights.get(key)
        if flight is not None:
            shared = await self._wait(flight)
            if shared:
                self.metrics.hits.labels("single_flight").inc()
                yield FromCache("single_flight")
                for chunk in shared:
                    yield chunk
                return
        flight = _Flight(asyncio.Event())
        self._flights[key] = flight
        inner = self.agent.respond(turn)
        first: asyncio.Task[object] | None = None
        lookup: asyncio.Task[tuple[Vector | None, Entry | None]] | None = None
        chunks: list[str] = []
        served: list[str] | None = None
        used_tool = action = marked = finished = False
        try:
            racing = False
            if self.policy.semantic:
                self._start_semantic()
                racing = self.semantic_ready and self._index.has(keys.context_key(context))
            item: object = _END
            if racing:
                # The agent's request goes out first; the semantic lookup runs beside it.
                first = _task(_next(inner))
                lookup = _task(self._semantic(context, caller))
                await asyncio.wait({first, lookup}, return_when=asyncio.FIRST_COMPLETED)
                if lookup.done() and not first.done():
                    hit = lookup.result()[1]
                    if hit is not None:
                        served = hit.chunks
                        await _cancel(first)
                        await _aclose(inner)
                        self.metrics.hit("semantic", _since(started))
                        yield FromCache("semantic")
                        for chunk in hit.chunks:
                            yield chunk
                        return
                    self.metrics.miss("semantic")
                item = await first
            else:
                # Nothing to race: the agent's first item directly, no task, no loop turn.
                item = await _next(inner)
            while item is not _END:
                if isinstance(item, str):
                    chunks.append(item)
                    yield item
                elif isinstance(item, NoCache):
                    marked = True
                elif isinstance(item, Action):
                    if isinstance(item, ToolCallStarted | ToolCallFinished):
                        used_tool = True
                    elif not isinstance(item, NoInterruption):
                        action = True
                    if (used_tool or action) and not flight.done.is_set():
                        flight.done.set()  # not storable: release the waiters now
                    yield item
                item = await _next(inner)
            finished = True
        finally:
            if not finished:
                for task in (first, lookup):
                    if task is not None:
                        await _cancel(task)
            with contextlib.suppress(Exception):
                await _aclose(inner)
            stored: list[str] | None = served
            if served is not None:
                pass
            elif finished:
                reason = reply_refusal(
                    chunks,
                    used_tool=used_tool,
                    action=action,
                    marked=marked,
                    variables=turn.dynamic_variables,
                    call=turn.call,
                    earlier=[u.content for u in turn.transcript[:-1] if u.role != "agent"],
                )
                if reason is None:
                    stored = chunks
                    entry = Entry(digest=self.digest, caller=caller, context=context, chunks=chunks)
                    self._spawn(self._store(key, entry, lookup))
                else:
                    self.metrics.not_stored.labels(reason).inc()
                    if reason in _STICKY_REFUSALS:
                        self._remember_uncacheable(key)
            else:
                self.metrics.not_stored.labels("cancelled").inc()
            if self._flights.get(key) is flight:
                del self._flights[key]
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
        self._index.remove(key)
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
            if not self.policy.semantic or self._embedder is None:
                return
            vector = None
            if lookup is not None:
                with contextlib.suppress(BaseException):
                    vector = (await lookup)[0]
            if vector is None:
                vector = await self._embed(entry.caller)
            if vector is None:
                return  # the model was busy: this entry serves the exact tier only
            context = keys.context_key(entry.context)
            self._index.add(context, key, vector)
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

    # ------------------------------------------------------------------ semantic tier

    def _start_semantic(self) -> None:
        if self._embedder_failed:
            return
        if self._embedder is None and self._embedder_loading is None:
            self._embedder_loading = _task(self._load_embedder())
        stale = (
            self._index_loaded_at is None
            or time.monotonic() - self._index_loaded_at > INDEX_REFRESH_S
        )
        if stale and (self._index_loading is None or self._index_loading.done()):
            self._index_loading = _task(self._load_index())

    async def _load_embedder(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            embedder = await loop.run_in_executor(self._pool(), Embedder)
        except EmbeddingUnavailable as exc:
            self._embedder_failed = True
            _log.error(
                "semantic cache tier disabled: embedding model failed to load", error=str(exc)
            )
            return
        self._embedder = embedder

    async def _load_index(self) -> None:
        try:
            rows = await self.cache.vectors(self.digest)
        except CacheUnavailable as exc:
            self._unavailable(exc)
            return
        bad = self._index.load(rows)
        if bad:
            self.metrics.errors.labels("corrupt").inc(bad)
        self._index_loaded_at = time.monotonic()

    def _pool(self) -> ThreadPoolExecutor:
        if self._executor is None:
            self._executor = ThreadPoolExecutor(1, thread_name_prefix="cache-embed")
        return self._executor

    async def _embed(self, text: str) -> Vector | None:
        """The line's vector, or ``None`` when the model is already busy.

        One embedding at a time, never a queue: the model's CPU would otherwise compete
        with the event loop of every call on the node. Under load the semantic tier
        answers fewer turns; the exact tier and the agent are never slowed by it.
        """
        embedder = self._embedder
        if embedder is None or self._embedding:
            self.metrics.bypassed.labels("embedding_busy").inc()
            return None
        self._embedding = True
        try:
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(self._pool(), embedder.embed, text)
        finally:
            self._embedding = False

    async def _semantic(self, context: str, caller: str) -> tuple[Vector | None, Entry | None]:
        """The caller line's vector and the entry to serve, if one is close and safe."""
        if not self._index.has(keys.context_key(context)):
            return None, None  # nothing to compare with: the vector is made when storing
        try:
            vector = await self._embed(caller)
            if vector is None:
                return None, None
        except Exception:
            self.metrics.errors.labels("embedding").inc()
            _log.exception("embedding failed; semantic lookup skipped")
            return None, None
        candidates = self._index.nearest(keys.context_key(context), vector)
        for key, score in candidates:
            if score < self.policy.threshold:
                break
            entry = await self._get(key)
            if entry is None:
                self._spawn(self._forget(key))
                continue
            refusal = guard_refusal(caller, entry.caller)
            if refusal is not None:
                self.metrics.refusals.labels(refusal).inc()
                continue
            return vector, entry
        return vector, None


async def _aclose(items: AsyncIterator[str | Action]) -> None:
    aclose = getattr(items, "aclose", None)
    if aclose is not None:
        await aclose()


async def _next(items: AsyncIterator[str | Action]) -> object:
    return await anext(items, _END)


def _task(coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
    task = asyncio.get_running_loop().create_task(coro)
    task.add_done_callback(_retrieve)
    return task


def _retrieve(task: asyncio.Task[Any]) -> None:
    # Side tasks whose result nobody awaits (a lookup that lost the race) must not log
    # "exception was never retrieved"; their errors are counted where they happen.
    if not task.cancelled():
        task.exception()


async def _cancel(task: asyncio.Task[Any]) -> None:
    """Cancel ``task`` and wait for it to unwind (so the generator it drives is free)."""
    if task.done():
        return
    task.cancel()
    with contextlib.suppress(BaseException):
        await task


def _since(started_ns: int) -> float:
    return (time.perf_counter_ns() - started_ns) / 1e9
