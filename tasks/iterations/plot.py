"""The metrics against iterations, as a PNG: matplotlib's Agg canvas, no pyplot, no global state."""

from __future__ import annotations

import io

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

PLOT_NAME = "metrics.png"
MOST_POINTS = 2000  # points drawn per metric: a long run is thinned evenly, its last point kept


def thinned(points: list[tuple[int, float]]) -> list[tuple[int, float]]:
    if len(points) <= MOST_POINTS:
        return points
    step = len(points) / MOST_POINTS
    kept = [points[int(index * step)] for index in range(MOST_POINTS)]
    return kept if kept[-1] == points[-1] else [*kept, points[-1]]


def metrics_plot(job: str, lines: list[dict[str, float]]) -> bytes:
    """One panel per metric, the iteration on the x axis; PNG bytes."""
    names = sorted({name for line in lines for name in line if name != "iteration"})
    figure = Figure(figsize=(8, max(2.2, 2.2 * len(names))), dpi=100)
    FigureCanvasAgg(figure)
    for index, name in enumerate(names or ["(no metrics)"], start=1):
        axes = figure.add_subplot(max(1, len(names)), 1, index)
        points = thinned([(int(line["iteration"]), float(line[name])) for line in lines if name in line])
        if points:
            axes.plot([point[0] for point in points], [point[1] for point in points], linewidth=1.0)
        axes.set_ylabel(name)
        axes.grid(True, alpha=0.3)
    figure.axes[-1].set_xlabel("iteration")
    figure.suptitle(f"{job}: metrics by iteration")
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", metadata={"Software": None})
    return buffer.getvalue()
