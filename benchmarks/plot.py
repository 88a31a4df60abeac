#!/usr/bin/env python
"""Plot a benchmark CSV written by ``benchmarks/run.py`` (or ``benchmarks/gpu.py``).

::

    python benchmarks/plot.py benchmarks/results/cpu.csv            # -> cpu.png beside it
    python benchmarks/plot.py results.csv -o out.png

One row of panels per (dtype, threads): on the left the median time per call of every
contender for every shape (log scale, lower is better), on the right the fraction of the
copy roofline each LRN contender reaches (fastest copy time / its time; 1 = as fast as
copying the same bytes; in a run without copies, the tvm_lrn kernel's time / its time).
Rows whose output check failed are drawn as red crosses.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from contenders import CONTENDERS
from report import read_csv

__all__ = ["plot", "save_plot"]

_MARKERS = "os^vD<>pPX*h"


def _threads(n: int) -> str:
    return "GPU" if n == 0 else f"{n} thread{'s' if n > 1 else ''}"


def _key_of(label: str) -> str:
    for k, c in CONTENDERS.items():
        if c.label == label:
            return k
    return label


def _label(key: str) -> str:
    return CONTENDERS[key].label if key in CONTENDERS else key


def _keys(timed: list[dict]) -> list[str]:
    """The contenders in the registry's order, those of ``timed`` first."""
    keys = [k for k in CONTENDERS if any(r["contender"] == k for r in timed)]
    keys += sorted({r["contender"] for r in timed} - set(keys))
    return keys + [k for k in CONTENDERS if k not in keys]


def _reference(sel: list[dict]) -> tuple[dict[str, float], str]:
    """``{shape: ms}`` of the fastest copy that passed its check, and what it is; in a
    run without copies (the user paths), the tvm_lrn kernel's."""
    best: dict[str, float] = {}
    for r in sel:
        if r["op"] == "copy" and r["check"] == "ok":
            v = float(r["median_ms"])
            best[r["shape"]] = min(best.get(r["shape"], v), v)
    if best:
        return best, "copy"
    kernel = {r["shape"]: float(r["median_ms"]) for r in sel if r["contender"] == "tvm_lrn"}
    return kernel, "tvm_lrn kernel"


def _draw_contender(axes, mine: list[dict], xpos: dict, best: dict, style: dict) -> None:
    """One contender's line of times and, for an LRN, of fractions of the reference."""
    ax_t, ax_f = axes
    key = mine[0]["contender"]
    lw = 2.2 if key == "tvm_lrn" else 1.0
    xs = [xpos[r["shape"]] for r in mine]
    ys = [float(r["median_ms"]) for r in mine]
    ax_t.plot(xs, ys, linewidth=lw, label=_label(key), **style)
    bad = [(x, y) for x, y, r in zip(xs, ys, mine, strict=True) if r["check"] != "ok"]
    if bad:
        ax_t.scatter(*zip(*bad, strict=True), marker="x", s=120, color="red", zorder=5)
    if mine[0]["op"] == "copy":
        return
    fx = [
        (xpos[r["shape"]], best[r["shape"]] / float(r["median_ms"]))
        for r in mine
        if r["shape"] in best and r["check"] == "ok"
    ]
    if fx:
        ax_f.plot(*zip(*fx, strict=True), linewidth=lw, label=_label(key), **style)


def _label_panels(axes, shapes: list[str], dtype: str, threads: int, reference: str) -> None:
    ax_t, ax_f = axes
    for ax in axes:
        ax.set_xticks(range(len(shapes)))
        ax.set_xticklabels(shapes, rotation=30, ha="right", fontsize=8)
        ax.grid(True, which="both", alpha=0.3)
    ax_t.set_yscale("log")
    ax_t.set_ylabel("median ms per call")
    ax_t.set_title(f"{dtype}, {_threads(threads)}: time")
    copy = reference == "copy"
    ax_f.set_ylabel("fastest copy time / time" if copy else f"{reference} time / time")
    ax_f.set_yscale("log")
    ax_f.axhline(1.0, color="gray", linestyle="--", linewidth=0.8)
    ax_f.set_title(f"{dtype}, {_threads(threads)}: fraction of {reference}")


def _legend(fig, axes, keys: list[str]) -> None:
    """One legend below the panels, in the contenders' order."""
    handles, labels = [], []
    for ax in axes.flat:
        for h, lab in zip(*ax.get_legend_handles_labels(), strict=True):
            if lab not in labels:
                handles.append(h)
                labels.append(lab)
    order = sorted(range(len(labels)), key=lambda i: keys.index(_key_of(labels[i])))
    fig.legend(
        [handles[i] for i in order],
        [labels[i] for i in order],
        loc="upper center",
        ncol=min(6, len(labels)),
        fontsize=8,
        bbox_to_anchor=(0.5, 0.0),
    )


def plot(rows: list[dict], path: Path, title: str = "LRN benchmark") -> Path:
    """Draw ``rows`` (tidy CSV rows as dicts of strings) into the PNG ``path``.

    Parameters
    ----------
    rows : list of dict
        Rows with at least contender, op, shape, dtype, threads, median_ms, check.
    path : pathlib.Path
        Where to write the PNG.
    title : str
        Figure title.

    Returns
    -------
    pathlib.Path
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    timed = [r for r in rows if r.get("median_ms")]
    panels = sorted(
        {(r["dtype"], int(r["threads"])) for r in timed}, key=lambda p: (p[0] != "float32", p)
    )
    if not panels:
        raise ValueError("no timed rows to plot")
    shapes = list(dict.fromkeys(r["shape"] for r in timed))
    xpos = {s: i for i, s in enumerate(shapes)}
    keys = _keys(timed)
    cmap = plt.get_cmap("tab20")
    style = {
        k: dict(color=cmap(i % 20), marker=_MARKERS[i % len(_MARKERS)]) for i, k in enumerate(keys)
    }
    fig, axes = plt.subplots(
        len(panels),
        2,
        figsize=(max(12, 1.4 * len(shapes) + 6), 3.8 * len(panels)),
        squeeze=False,
    )
    for row_axes, (dtype, threads) in zip(axes, panels, strict=True):
        sel = [r for r in timed if r["dtype"] == dtype and int(r["threads"]) == threads]
        best, reference = _reference(sel)
        for k in keys:
            mine = sorted((r for r in sel if r["contender"] == k), key=lambda r: xpos[r["shape"]])
            if mine:
                _draw_contender(row_axes, mine, xpos, best, style[k])
        _label_panels(row_axes, shapes, dtype, threads, reference)
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    _legend(fig, axes, keys)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


def save_plot(rows: list[dict], path: Path, title: str) -> None:
    """:func:`plot`, saying what it wrote, or why there is no plot (no matplotlib)."""
    try:
        print(f"wrote {plot(rows, path, title=title)}")
    except ImportError as err:
        print(f"no plot ({err}); pip install -e .[bench]")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description="Plot a benchmarks/run.py CSV.")
    p.add_argument("csv", type=Path)
    p.add_argument("-o", "--output", type=Path, default=None)
    p.add_argument("--title", default=None)
    args = p.parse_args(argv)
    rows = read_csv(args.csv)
    out = plot(rows, args.output or args.csv.with_suffix(".png"), args.title or args.csv.stem)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
