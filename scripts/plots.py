"""Success-rate curves as PNGs, shared by the demo and the experiment scripts."""

from __future__ import annotations

from pathlib import Path


def plot_success_curves(
    series: dict[str, list[tuple[float, float]]],
    path: Path,
    xlabel: str,
    title: str,
    hline: tuple[float, str] | None = None,
    legend_below: bool = False,
) -> None:
    """One line per name of (x, success in [0, 1]) points; ``hline`` = (success, label) draws a reference.
    ``legend_below`` puts the legend under the axes, where it cannot cover a curve."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 5.2 if legend_below else 4), dpi=120)
    for name, points in series.items():
        ax.plot([x for x, _ in points], [100 * y for _, y in points], marker="o", ms=4, label=name)
    if hline is not None:
        ax.axhline(100 * hline[0], color="gray", ls="--", label=hline[1])
    ax.set_xlabel(xlabel)
    ax.set_ylabel("success rate (%)")
    ax.set_ylim(-5, 105)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    if legend_below:
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=2, fontsize=8)
    else:
        ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
