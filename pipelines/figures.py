"""Report figures (PNG, matplotlib's Agg backend): the F1 gap per AU, and edit grids in the style of the paper's
Fig. 3 (each AU set absent / present on test faces) and Fig. 5 (happy AU2+6+7+12, angry AU4+23)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from manifests.aus import AU_NAMES, AUS, N_AUS  # noqa: E402

COMBOS = {"happy": (2, 6, 7, 12), "angry": (4, 23)}  # the paper's Fig. 5


def f1_gap_chart(t1: dict, path) -> Path:
    """Grouped bars: F1 gap (real − synthesis) per AU, one bar per detector; unsupported AUs have no bar."""
    path = Path(path)
    dets = list(t1)
    fig, ax = plt.subplots(figsize=(10, 4), dpi=100)
    width = 0.8 / max(len(dets), 1)
    x = np.arange(N_AUS)
    for k, det in enumerate(dets):
        gaps = [np.nan if t1[det][f"AU{a}"] is None or t1[det][f"AU{a}"]["gap_f1"] is None
                else t1[det][f"AU{a}"]["gap_f1"] for a in AUS]
        ax.bar(x + (k - (len(dets) - 1) / 2) * width, gaps, width, label=det)
    ax.axhline(0, color="black", linewidth=0.8)
    ax.set_xticks(x, [f"AU{a}" for a in AUS])
    ax.set_ylabel("F1 gap (real − synthesis), %")
    ax.set_title("Detection F1 gap between real and synthetic test frames")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def _faces(store_path, synth, n: int, seed: int) -> np.ndarray:
    """Up to `n` distinct-subject source rows (test faces) from the synthetic manifest."""
    rng = np.random.default_rng(seed)
    by_subject = synth.groupby("subject")["source_row"].first()
    pick = rng.permutation(len(by_subject))[:n]
    return np.sort(by_subject.to_numpy()[pick])


def _show(ax, img, title=None):
    ax.imshow(img)
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=8)


def edit_grids(checkpoint, store_path, synth, out_dir, faces: int = 3, seed: int = 0) -> list[Path]:
    """Fig. 3 and Fig. 5 style grids, edited live with the checkpoint; returns the PNG paths."""
    from lacgan.infer import Editor
    from manifests.aligned import AlignedStore

    editor = Editor.load(checkpoint)
    rows = _faces(store_path, synth, faces, seed)
    images, lms, _ = AlignedStore.open(store_path).read(rows)
    out_dir = Path(out_dir)

    # Fig. 3: rows = AUs, per face: absent, present (all other regions left as the source)
    n = len(rows)
    targets = np.full((N_AUS, 2, N_AUS), -1, np.int8)
    for j in range(N_AUS):
        targets[j, 0, j], targets[j, 1, j] = 0, 1
    fig, axes = plt.subplots(N_AUS, 2 * n, figsize=(2 * n * 1.3, N_AUS * 1.3), dpi=100, squeeze=False)
    for f in range(n):
        edited = editor.edit(np.repeat(images[f:f + 1], 2 * N_AUS, 0), np.repeat(lms[f:f + 1], 2 * N_AUS, 0),
                             targets.reshape(-1, N_AUS)).reshape(N_AUS, 2, *images.shape[1:])
        for j, au in enumerate(AUS):
            for s, state in enumerate(("absent", "present")):
                _show(axes[j, 2 * f + s], edited[j, s], f"face {f + 1}: {state}" if j == 0 else None)
    for j, au in enumerate(AUS):
        axes[j, 0].set_ylabel(f"AU{au}\n{AU_NAMES[au]}", fontsize=7)
    fig.suptitle("Single AUs set absent / present (Fig. 3 style)", fontsize=10)
    fig.tight_layout()
    single = out_dir / "single_au_grid.png"
    fig.savefig(single)
    plt.close(fig)

    # Fig. 5: per face: source, happy, angry
    combos = np.full((len(COMBOS), N_AUS), -1, np.int8)
    for c, aus in enumerate(COMBOS.values()):
        combos[c, [AUS.index(a) for a in aus]] = 1
    fig, axes = plt.subplots(n, 1 + len(COMBOS), figsize=(3 * 1.8, n * 1.8), dpi=100, squeeze=False)
    for f in range(n):
        edited = editor.edit(np.repeat(images[f:f + 1], len(COMBOS), 0), np.repeat(lms[f:f + 1], len(COMBOS), 0),
                             combos)
        _show(axes[f, 0], images[f], "source")
        for c, (name, aus) in enumerate(COMBOS.items()):
            _show(axes[f, 1 + c], edited[c], f"{name}: AU" + "+".join(map(str, aus)))
    fig.suptitle("AU combinations (Fig. 5 style)", fontsize=10)
    fig.tight_layout()
    combo = out_dir / "combos_grid.png"
    fig.savefig(combo)
    plt.close(fig)
    return [single, combo]
