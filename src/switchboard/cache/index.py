"""The in-process semantic index: vectors grouped by context, searched with numpy.

The backend keeps the vectors (``ResponseCache.put_vector``), so every node can rebuild
the same index; this is the fast copy. Candidates are only compared within one context
(the agent's previous line), which keeps multi-turn meaning intact and each search small:
a matrix-vector product over at most a few thousand rows.
"""

from __future__ import annotations

import numpy as np

from switchboard.cache.embedding import DIMENSION, Vector
from switchboard.cache.entry import decode_vector


class SemanticIndex:
    def __init__(self) -> None:
        self._groups: dict[str, tuple[list[str], list[Vector]]] = {}
        self._matrices: dict[str, np.ndarray] = {}
        self._where: dict[str, str] = {}

    def __len__(self) -> int:
        return len(self._where)

    def has(self, context: str) -> bool:
        group = self._groups.get(context)
        return bool(group and group[0])

    def add(self, context: str, key: str, vector: Vector) -> None:
        if key in self._where:
            self.remove(key)
        keys, vectors = self._groups.setdefault(context, ([], []))
        keys.append(key)
        vectors.append(vector)
        self._where[key] = context
        self._matrices.pop(context, None)

    def remove(self, key: str) -> None:
        context = self._where.pop(key, None)
        if context is None:
            return
        keys, vectors = self._groups[context]
        i = keys.index(key)
        del keys[i]
        del vectors[i]
        self._matrices.pop(context, None)

    def nearest(self, context: str, vector: Vector, k: int = 3) -> list[tuple[str, float]]:
        """Up to ``k`` (key, cosine) in ``context``, best first."""
        group = self._groups.get(context)
        if not group or not group[0]:
            return []
        matrix = self._matrices.get(context)
        if matrix is None:
            matrix = self._matrices[context] = np.vstack(group[1])
        scores = matrix @ vector
        order = np.argsort(-scores)[:k]
        return [(group[0][i], float(scores[i])) for i in order]

    def load(self, rows: dict[str, bytes]) -> int:
        """Add the backend's rows; returns how many were corrupt (skipped)."""
        bad = 0
        for key, blob in rows.items():
            record = decode_vector(blob)
            if record is None or len(record.vector) != DIMENSION * 4:
                bad += 1
                continue
            self.add(record.context, key, np.frombuffer(record.vector, dtype=np.float32))
        return bad
