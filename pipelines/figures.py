"""Report figures (PNG, matplotlib's Agg backend): F1 per AU and set (floor, synthesis, ceiling, real), the
source | synthetic | counterfactual grid, where pixels outside the AU regions changed, edit grids in the style of
the paper's Fig. 3 (each AU set absent / present on test faces) and Fig. 5 (happy AU2+6+7+12, angry AU4+23), and
the Fig. 4 comparison (the same sources and single-AU targets edited by LAC-GAN and by GANimation)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from manifests.aus import AU_NAMES, AUS, N_AUS  # noqa: E402

COMBOS = {"happy": (2, 6, 7, 12), "angry": (4, 23)}  # the paper's Fig. 5


SET_STYLE = {"always_present": ("always-present", "#bbbbbb"), "unedited": ("unedited (floor)", "#e0a040"),
             "synthetic": ("synthesis", "#3070c0"), "counterfactual": ("counterfactual (ceiling)", "#40a060"),
             "real": ("real", "#303030")}


def f1_sets_chart(t1: dict, path) -> Path:
    """Per detector, F1 per AU of every set (floor, synthesis, ceiling, real, always-present) as grouped bars."""
    path = Path(path)
    dets = list(t1)
    fig, axes = plt.subplots(len(dets), 1, figsize=(11, 3.2 * len(dets)), dpi=100, squeeze=False)
    x = np.arange(N_AUS + 1)
    for ax, det in zip(axes[:, 0], dets):
        cells = [c for c in SET_STYLE if t1[det]["mean"] is not None and t1[det]["mean"][c] is not None]
        width = 0.8 / max(len(cells), 1)
        for k, c in enumerate(cells):
            vals = [np.nan if t1[det][row] is None or t1[det][row][c] is None or t1[det][row][c]["f1"] is None
                    else t1[det][row][c]["f1"] for row in [f"AU{a}" for a in AUS] + ["mean"]]
            label, colour = SET_STYLE[c]
            ax.bar(x + (k - (len(cells) - 1) / 2) * width, vals, width, label=label, color=colour)
        ax.set_xticks(x, [f"AU{a}" for a in AUS] + ["mean"])
        ax.set_ylabel("F1, %")
        ax.set_ylim(0, 100)
        eqi = t1[det]["edit_quality_index"]
        ax.set_title(f"{det}: F1 per AU" + ("" if eqi is None else f" (edit-quality index {eqi:.2f})"), fontsize=10)
        ax.legend(fontsize=7, ncol=5, loc="upper left")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def counterfactual_grid(store_path, synth_images, cf_images, synth, path, seed: int = 0, per_au: int = 1) -> Path:
    """Rows of source | synthetic | counterfactual for changed-AU edits, one AU per row (where the plan has one);
    edits with the fewest other changed AUs are preferred, so the row shows that AU."""
    from manifests.aligned import AlignedStore

    path = Path(path)
    store = AlignedStore.open(store_path)
    rng = np.random.default_rng(seed)
    targets = synth[[f"AU{a}" for a in AUS]].to_numpy(np.int8)
    src_labels = store.labels()[synth["source_row"].to_numpy()]
    changed = (targets != -1) & (src_labels != -1) & (targets != src_labels)
    picks = []
    for j, au in enumerate(AUS):
        cand = np.flatnonzero(changed[:, j])
        if len(cand) == 0:
            continue
        others = changed[cand].sum(1)
        cand = cand[others == others.min()]
        for i in rng.permutation(cand)[:per_au]:
            picks.append((au, int(i), f"AU{au} {src_labels[i, j]}→{targets[i, j]} (+{int(others.min()) - 1} other)"))
    fig, axes = plt.subplots(max(len(picks), 1), 3, figsize=(3 * 1.6, max(len(picks), 1) * 1.6), dpi=100,
                             squeeze=False)
    for r, (au, i, title) in enumerate(picks):
        src = store.read(synth["source_row"].to_numpy()[i:i + 1])[0][0]
        for c, (img, name) in enumerate(((src, "source"), (np.asarray(synth_images[i]), "synthetic"),
                                         (np.asarray(cf_images[i]), "counterfactual"))):
            _show(axes[r, c], img, name if r == 0 else None)
        axes[r, 0].set_ylabel(title, fontsize=6)
    fig.suptitle("Edits against the counterfactual ground truth", fontsize=9)
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
    from lacgan.editors import load_editor
    from manifests.aligned import AlignedStore

    editor = load_editor(checkpoint)  # LAC-GAN or GANimation, by the model kind the checkpoint records
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


def outside_change_maps(maps: dict[str, dict], path) -> Path:
    """Per method (row): its mean source face, and per pixel the share of frames whose pixel outside every AU region
    changed (> 0, > threshold grey levels); maps as `fidelity.outside_change` returns them, one colour scale
    (0-1) for all; grey where a pixel is never outside the regions."""
    path = Path(path)
    cmap = matplotlib.colormaps["magma"].with_extremes(bad="#9a9a9a")
    fig, axes = plt.subplots(len(maps), 3, figsize=(3 * 2.3, len(maps) * 2.3), dpi=100, squeeze=False)
    for r, (name, m) in enumerate(maps.items()):
        _show(axes[r, 0], m["mean_source"], "mean source face" if r == 0 else None)
        axes[r, 0].set_ylabel(name, fontsize=8)
        over = f"changed > {int(m['threshold'])}"
        for c, (key, title) in enumerate((("changed", "changed > 0"), ("changed_over", over))):
            im = axes[r, 1 + c].imshow(m[key], cmap=cmap, vmin=0, vmax=1)
            axes[r, 1 + c].set_xticks([])
            axes[r, 1 + c].set_yticks([])
            if r == 0:
                axes[r, 1 + c].set_title(title, fontsize=8)
    fig.colorbar(im, ax=axes[:, 1:].ravel().tolist(), shrink=0.8, label="share of frames")
    fig.suptitle("Pixels outside every AU region: where they changed", fontsize=9)
    fig.savefig(path)
    plt.close(fig)
    return path


def single_au_flips(labels: np.ndarray, aus=AUS) -> np.ndarray:
    """(n, len(aus), 12) targets: per face and listed AU, that AU set to the opposite of the source's label
    (present when unknown), every other AU -1 (keep the source's)."""
    cols = [AUS.index(a) for a in aus]
    t = np.full((len(labels), len(cols), N_AUS), -1, np.int8)
    for c, j in enumerate(cols):
        t[:, c, j] = np.where(labels[:, j] == 1, 0, 1)
    return t


def fig4_grid(editors: dict, store_path, synth, path, faces: int = 2, seed: int = 0, aus=AUS) -> Path:
    """The paper's Fig. 4, side by side: per face, rows source | each method; one column per AU in `aus`, whose
    target flips that AU (single_au_flips). `editors`: {method name: loaded editor (lacgan.editors.Editor)};
    every method edits the same sources to the same targets."""
    from manifests.aligned import AlignedStore

    path = Path(path)
    rows = _faces(store_path, synth, faces, seed)
    images, lms, labels = AlignedStore.open(store_path).read(rows)
    targets = single_au_flips(labels, aus)
    n, k = targets.shape[:2]
    edited = {name: ed.edit(np.repeat(images, k, 0), np.repeat(lms, k, 0), targets.reshape(n * k, N_AUS))
              .reshape(n, k, *images.shape[1:]) for name, ed in editors.items()}
    per_face = 1 + len(editors)
    fig, axes = plt.subplots(n * per_face, k, figsize=(k * 1.15, n * per_face * 1.2), dpi=100, squeeze=False)
    for f in range(n):
        for c, au in enumerate(aus):
            j = AUS.index(au)
            _show(axes[f * per_face, c], images[f], f"AU{au} {labels[f, j]}→{targets[f, c, j]}")
            for m, name in enumerate(editors):
                _show(axes[f * per_face + 1 + m, c], edited[name][f, c])
        axes[f * per_face, 0].set_ylabel(f"face {f + 1}\nsource", fontsize=7)
        for m, name in enumerate(editors):
            axes[f * per_face + 1 + m, 0].set_ylabel(name, fontsize=7)
    fig.suptitle("Single AUs flipped on the same sources (Fig. 4 style): " + " vs ".join(editors), fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
