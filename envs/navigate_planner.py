"""A* on an occupancy grid of the Navigate arena: the expert's path planner and the env's reachability check.

Obstacles are axis-aligned boxes ``(cx, cy, hx, hy)`` inflated by the base radius plus a margin, so a
path through free cells keeps the base clear of them.
"""

from __future__ import annotations

import heapq
from collections import deque

import numpy as np

from envs.navigate_scene import ARENA_HALF, BASE_RADIUS

RESOLUTION = 0.05
MARGIN = 0.06
_MOVES = [(1, 0), (-1, 0), (0, 1), (0, -1), (1, 1), (1, -1), (-1, 1), (-1, -1)]


class GridPlanner:
    def __init__(self, boxes: list[tuple[float, float, float, float]]) -> None:
        n = round(2 * ARENA_HALF / RESOLUTION)
        self.n = n
        centres = -ARENA_HALF + (np.arange(n) + 0.5) * RESOLUTION
        xs, ys = np.meshgrid(centres, centres, indexing="ij")
        inflate = BASE_RADIUS + MARGIN
        free = (np.abs(xs) < ARENA_HALF - inflate) & (np.abs(ys) < ARENA_HALF - inflate)
        for cx, cy, hx, hy in boxes:
            free &= ~((np.abs(xs - cx) < hx + inflate) & (np.abs(ys - cy) < hy + inflate))
        self.free = free
        self.centres = centres

    def cell(self, p: np.ndarray) -> tuple[int, int]:
        i = int(np.clip((p[0] + ARENA_HALF) / RESOLUTION, 0, self.n - 1))
        j = int(np.clip((p[1] + ARENA_HALF) / RESOLUTION, 0, self.n - 1))
        return i, j

    def point(self, c: tuple[int, int]) -> np.ndarray:
        return np.array([self.centres[c[0]], self.centres[c[1]]])

    def reachable(self, start: np.ndarray) -> np.ndarray:
        """Boolean grid of cells reachable from ``start`` (breadth-first flood fill)."""
        seen = np.zeros_like(self.free)
        s = self.cell(start)
        seen[s] = True
        queue = deque([s])
        while queue:
            i, j = queue.popleft()
            for di, dj in _MOVES[:4]:
                a, b = i + di, j + dj
                if 0 <= a < self.n and 0 <= b < self.n and self.free[a, b] and not seen[a, b]:
                    seen[a, b] = True
                    queue.append((a, b))
        return seen

    def can_reach(self, reach: np.ndarray, goal: np.ndarray, radius: float) -> bool:
        """Whether some reachable cell lies within ``radius`` of ``goal``."""
        xs, ys = np.meshgrid(self.centres, self.centres, indexing="ij")
        near = (xs - goal[0]) ** 2 + (ys - goal[1]) ** 2 < radius**2
        return bool(np.any(reach & near))

    def plan(self, start: np.ndarray, goal: np.ndarray, stop_radius: float) -> list[np.ndarray]:
        """Waypoints from ``start`` to a free cell within ``stop_radius`` of ``goal``; [] if none."""
        s = self.cell(start)
        xs, ys = np.meshgrid(self.centres, self.centres, indexing="ij")
        if not self.free[s] and self.free.any():
            # Start inside an inflated obstacle (close to something): search from the nearest free cell.
            d2 = np.where(self.free, (xs - start[0]) ** 2 + (ys - start[1]) ** 2, np.inf)
            i, j = np.unravel_index(np.argmin(d2), d2.shape)
            s = (int(i), int(j))
        dist = np.hypot(xs - goal[0], ys - goal[1])
        at_goal = dist < stop_radius
        h = np.maximum(0.0, dist - stop_radius) / RESOLUTION  # admissible: straight-line cells to go
        frontier = [(float(h[s]), 0.0, s)]
        parent: dict[tuple[int, int], tuple[int, int] | None] = {s: None}
        cost = {s: 0.0}
        end = None
        while frontier:
            _, g, c = heapq.heappop(frontier)
            if g > cost[c]:
                continue
            if at_goal[c]:
                end = c
                break
            for di, dj in _MOVES:
                nb = (c[0] + di, c[1] + dj)
                if not (0 <= nb[0] < self.n and 0 <= nb[1] < self.n) or not (self.free[nb] or nb == s):
                    continue
                ng = g + (1.414 if di and dj else 1.0)
                if ng < cost.get(nb, np.inf):
                    cost[nb], parent[nb] = ng, c
                    heapq.heappush(frontier, (ng + float(h[nb]), ng, nb))
        if end is None:
            return []
        cells: list[tuple[int, int]] = []
        while end is not None:
            cells.append(end)
            end = parent[end]
        return self._shortcut(cells[::-1])

    def _line_free(self, a: tuple[int, int], b: tuple[int, int]) -> bool:
        steps = max(abs(b[0] - a[0]), abs(b[1] - a[1])) * 2 + 1
        for t in np.linspace(0.0, 1.0, steps):
            c = (round(a[0] + t * (b[0] - a[0])), round(a[1] + t * (b[1] - a[1])))
            if not self.free[c] and c != a:
                return False
        return True

    def _shortcut(self, cells: list[tuple[int, int]]) -> list[np.ndarray]:
        """Drop waypoints that a straight line can skip, so the base drives smooth, short segments."""
        out = [cells[0]]
        i = 0
        while i < len(cells) - 1:
            j = len(cells) - 1
            while j > i + 1 and not self._line_free(cells[i], cells[j]):
                j -= 1
            out.append(cells[j])
            i = j
        return [self.point(c) for c in out[1:]] or [self.point(cells[-1])]
