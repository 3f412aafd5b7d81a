"""The semantic tier of ``CachedAgent``: the embedding model, the index, the lookup.

The model loads in a thread and the index from the backend, both in the background; until
both are there the tier answers nothing and turns go on to the agent. One embedding runs
at a time, never a queue (``embed``). A candidate is served only above the policy's
threshold and when every guard agrees (``guards.guard_refusal``).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor

from switchboard.cache import keys
from switchboard.cache.base import CacheUnavailable, ResponseCache
from switchboard.cache.embedding import Embedder, EmbeddingUnavailable, Vector
from switchboard.cache.entry import Entry
from switchboard.cache.guards import guard_refusal
from switchboard.cache.index import SemanticIndex
from switchboard.cache.metrics import CacheMetrics
from switchboard.cache.policy import CachePolicy
from switchboard.cache.tasks import side_task
from switchboard.log import get_logger

#: How often the semantic index re-reads the backend (entries other nodes stored).
INDEX_REFRESH_S = 30.0
_log = get_logger("switchboard.cache")


class SemanticTier:
    """``get`` reads an entry through the agent (which drops corrupt ones); ``forget``
    removes a key everywhere; ``unavailable`` reports the backend down; ``load`` makes
    the embedding model (in a thread)."""

    def __init__(
        self,
        cache: ResponseCache,
        policy: CachePolicy,
        digest: str,
        metrics: CacheMetrics,
        embedder: Embedder | None,
        *,
        get: Callable[[str], Awaitable[Entry | None]],
        forget: Callable[[str], None],
        unavailable: Callable[[CacheUnavailable], None],
        load: Callable[[], Embedder] = Embedder,
    ) -> None:
        self.cache = cache
        self.policy = policy
        self.digest = digest
        self.metrics = metrics
        self.index = SemanticIndex()
        self.embedder = embedder
        self._get = get
        self._forget = forget
        self._unavailable = unavailable
        self._load = load
        self._index_loaded_at: float | None = None
        self.index_loading: asyncio.Task[None] | None = None
        self._failed = not policy.semantic
        self.embedder_loading: asyncio.Task[None] | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._embedding = False

    @property
    def ready(self) -> bool:
        return self.embedder is not None and self._index_loaded_at is not None

    def start(self) -> None:
        """Load the model (once) and the index (when stale), in the background."""
        if self._failed:
            return
        if self.embedder is None and self.embedder_loading is None:
            self.embedder_loading = side_task(self._load_embedder())
        stale = (
            self._index_loaded_at is None
            or time.monotonic() - self._index_loaded_at > INDEX_REFRESH_S
        )
        if stale and (self.index_loading is None or self.index_loading.done()):
            self.index_loading = side_task(self._load_index())

    def close(self) -> None:
        for task in (self.embedder_loading, self.index_loading):
            if task is not None:
                task.cancel()
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)

    async def _load_embedder(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            embedder = await loop.run_in_executor(self._pool(), self._load)
        except EmbeddingUnavailable as exc:
            self._failed = True
            _log.error(
                "semantic cache tier disabled: embedding model failed to load", error=str(exc)
            )
            return
        self.embedder = embedder

    async def _load_index(self) -> None:
        try:
            rows = await self.cache.vectors(self.digest)
        except CacheUnavailable as exc:
            self._unavailable(exc)
            return
        bad = self.index.load(rows)
        if bad:
            self.metrics.errors.labels("corrupt").inc(bad)
        self._index_loaded_at = time.monotonic()

    def _pool(self) -> ThreadPoolExecutor:
        if self._executor is None:
            self._executor = ThreadPoolExecutor(1, thread_name_prefix="cache-embed")
        return self._executor

    async def embed(self, text: str) -> Vector | None:
        """The line's vector, or ``None`` when the model is already busy.

        One embedding at a time, never a queue: the model's CPU would otherwise compete
        with the event loop of every call on the node. Under load the semantic tier
        answers fewer turns; the exact tier and the agent are never slowed by it.
        """
        embedder = self.embedder
        if embedder is None or self._embedding:
            self.metrics.bypassed.labels("embedding_busy").inc()
            return None
        self._embedding = True
        try:
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(self._pool(), embedder.embed, text)
        finally:
            self._embedding = False

    async def lookup(self, context: str, caller: str) -> tuple[Vector | None, Entry | None]:
        """The caller line's vector and the entry to serve, if one is close and safe."""
        if not self.index.has(keys.context_key(context)):
            return None, None  # nothing to compare with: the vector is made when storing
        try:
            vector = await self.embed(caller)
            if vector is None:
                return None, None
        except Exception:
            self.metrics.errors.labels("embedding").inc()
            _log.exception("embedding failed; semantic lookup skipped")
            return None, None
        candidates = self.index.nearest(keys.context_key(context), vector)
        for key, score in candidates:
            if score < self.policy.threshold:
                break
            entry = await self._get(key)
            if entry is None:
                self._forget(key)
                continue
            refusal = guard_refusal(caller, entry.caller)
            if refusal is not None:
                self.metrics.refusals.labels(refusal).inc()
                continue
            return vector, entry
        return vector, None
