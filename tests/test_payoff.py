"""The payoff: both arms trained with the same seeds and budget, scored on held-out real frames only; every number
of the table recomputed from the saved score file; resuming; JAA-Net at smoke scale; the CLI with the real
LAC-GAN Editor. Most synthetic frames come from `standin_editor.StandInEditor` (a labelled TEST STAND-IN)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import f1_score, roc_auc_score

from detectors.base import detector_preset, train_detector
from manifests.aligned import AlignedStore
from manifests.aus import AU_COLUMNS
from pipeline_fixtures import train_smoke_lacgan
from pipelines import generate as gen
from pipelines import payoff as po
from pipelines.trainset import TrainsetConfig, generate_trainset, plan_trainset, synthetic_extra
from standin_editor import write_checkpoint

SMALL_JAANET = dict(epochs=1, batch_size=16, input_size=56, crop=48, unit=2)  # smoke scale: 8 steps


@pytest.fixture(scope="module")
def synth(aligned_store, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("payoff")
    plan = plan_trainset(aligned_store, tmp / "plan.parquet", TrainsetConfig(ratio=1.0))
    generate_trainset(plan, aligned_store, write_checkpoint(tmp / "ck", 64), tmp / "synth", 3,
                      gen.GenerateConfig(frames_per_shard=32, workers=0, editor="standin_editor:StandInEditor"))
    return tmp / "synth"


@pytest.fixture(scope="module")
def hogsvm_payoff(aligned_store, synth, tmp_path_factory):
    out = tmp_path_factory.mktemp("hogsvm-payoff")
    md = po.measure_payoff(aligned_store, synth, out, po.PayoffConfig(detectors=("hogsvm",), seeds=(0, 1)))
    return out, md


def test_table_is_recomputed_from_the_score_file(aligned_store, hogsvm_payoff):
    out, md = hogsvm_payoff
    table = pd.read_csv(out / "payoff.csv", dtype={"au": str})
    scores, runs = po.read_payoff_scores(out / "scores.parquet")
    assert set(runs) == {f"hogsvm-{a}-seed{s}" for a in ("real", "real-synthetic") for s in (0, 1)}
    # only held-out real frames were scored
    folds = AlignedStore.open(aligned_store).folds()
    assert (folds[scores["frame_id"].unique()] == 3).all()
    assert runs["hogsvm-real-synthetic-seed0"]["extra_frames"] > 0 == runs["hogsvm-real-seed0"]["extra_frames"]
    # per-AU F1 by hand (sklearn on the raw rows), then mean/sd over seeds and the paired delta
    f1 = {}
    for (arm, seed, au), g in scores.groupby(["arm", "seed", "au"]):
        g = g[(g["label"] != -1) & (g["status"] == "ok")]
        f1[arm, seed, str(au)] = 100 * f1_score(g["label"], g["present"], zero_division=0)
    for r in table[table["au"] != "mean"].itertuples():
        if ("real", 0, r.au) not in f1:  # an AU with one class in the training labels: unsupported, no number
            assert np.isnan(r.real_mean) and r.verdict == "−"
            continue
        real = [f1["real", s, r.au] for s in (0, 1)]
        both = [f1["real+synthetic", s, r.au] for s in (0, 1)]
        assert r.real_mean == pytest.approx(np.mean(real)) and r.synth_mean == pytest.approx(np.mean(both))
        assert r.real_sd == pytest.approx(np.std(real, ddof=1), abs=1e-9)
        assert r.delta == pytest.approx(np.mean(np.subtract(both, real)))
        assert r.verdict == ("gain" if r.delta >= 1 else "loss" if r.delta <= -1 else "unchanged")
    mean = table[table["au"] == "mean"].iloc[0]
    assert mean.real_mean == pytest.approx(table[table["au"] != "mean"]["real_mean"].mean())  # over supported AUs
    # each arm's ranking: ROC AUC of the raw scores per seed, then averaged over seeds (over AUs for "mean")
    auc = {}
    for (arm, seed, au), g in scores.groupby(["arm", "seed", "au"]):
        g = g[(g["label"] != -1) & (g["status"] == "ok")]
        auc[arm, seed, str(au)] = roc_auc_score(g["label"], g["score"]) if g["label"].nunique() == 2 else np.nan
    by_au = table.set_index("au")
    for key, arm in (("real", "real"), ("synth", "real+synthetic")):
        for au in by_au.index.drop("mean"):
            got = [v for v in (auc.get((arm, s, au), np.nan) for s in (0, 1)) if not np.isnan(v)]
            assert by_au.loc[au, f"{key}_auc"] == pytest.approx(np.mean(got) if got else np.nan, nan_ok=True)
        seeds = [np.nanmean([v for (a, s, _), v in auc.items() if a == arm and s == seed]) for seed in (0, 1)]
        assert by_au.loc["mean", f"{key}_auc"] == pytest.approx(np.mean(seeds))
    text = md.read_text()
    m = by_au.loc["mean"]
    assert (f"real only {m.real_auc:.3f}; real + synthetic {m.synth_auc:.3f} (Δ {m.synth_auc - m.real_auc:+.3f})."
            in text)
    assert "| AU12 |" in text and "Gained:" in text and "Target" in text and (out / "payoff.png").stat().st_size > 0
    # the budget both arms shared, from the runs' saved configs (the cpu preset's C)
    real = runs["hogsvm-real-seed0"]
    assert real["config"]["C"] == detector_preset("hogsvm", "cpu").C and real["config"]["seed"] == 0
    assert (f"Training budget, every arm and seed: one fit, C {real['config']['C']}, max_iter "
            f"{real['config']['max_iter']}; {real['train_frames']} real training frames (+ "
            f"{runs['hogsvm-real-synthetic-seed0']['extra_frames']} extra frames in the mixed arms).") in text
    # the always-present baseline comes from the labels alone
    g = scores[(scores.au == 12) & (scores.arm == "real") & (scores.seed == 0) & (scores.label != -1)]
    base = table.set_index("au").loc["12", "always_present"]
    assert base == pytest.approx(100 * f1_score(g["label"], np.ones(len(g), int)))


def test_rerun_resumes_without_retraining(aligned_store, synth, hogsvm_payoff, monkeypatch):
    out, _ = hogsvm_payoff
    before = pd.read_csv(out / "payoff.csv")

    def no_training(*a, **k):
        raise AssertionError("a finished run was trained again")

    monkeypatch.setattr(po, "train_and_score", no_training)
    po.measure_payoff(aligned_store, synth, out, po.PayoffConfig(detectors=("hogsvm",), seeds=(0, 1)))
    pd.testing.assert_frame_equal(pd.read_csv(out / "payoff.csv"), before)


def test_control_and_ceiling_arms(aligned_store, synth, tmp_path):
    """`controls`: the sources again (their own pixels and labels) and the cohort's true renderings of the same
    plan (targets as labels) are trained and scored like the other arms; their columns are recomputed from the
    score file; an unknown control is refused by name."""
    from pipelines import synth_store as ss
    from pipelines.counterfactual import write_counterfactuals
    from pipelines.trainset import source_extra, synthetic_labels

    man = synthetic_labels(synth)
    store = AlignedStore.open(aligned_store)
    src = source_extra(synth, aligned_store, 3)
    rows = man["source_row"].to_numpy()
    np.testing.assert_array_equal(src.frames.read(np.arange(len(man))), store.read(rows)[0])
    np.testing.assert_array_equal(src.frames.labels, store.labels()[rows])
    np.testing.assert_array_equal(src.landmarks, store.landmarks.get_orthogonal_selection((rows, slice(None),
                                                                                           slice(None))))

    cfg = po.PayoffConfig(detectors=("hogsvm",), seeds=(0,), controls=("counterfactual", "sources"))
    assert cfg.arms == ("real", "real+synthetic", "real+sources", "real+counterfactual")
    md = po.measure_payoff(aligned_store, synth, tmp_path, cfg)
    scores, runs = po.read_payoff_scores(tmp_path / "scores.parquet")
    assert set(scores["arm"]) == set(cfg.arms)
    assert runs["hogsvm-real-sources-seed0"]["extra_frames"] == runs["hogsvm-real-counterfactual-seed0"][
        "extra_frames"] == len(man)
    # the ceiling's frames are the renderer's for the same plan, labelled with the targets
    import zarr

    plan = Path(zarr.open_group(str(synth / ss.STORE_NAME), mode="r").attrs["plan"])
    truth = write_counterfactuals(plan, aligned_store, tmp_path / "again")
    cf = zarr.open_group(str(tmp_path / "counterfactual" / ss.STORE_NAME), mode="r")["images"][:]
    np.testing.assert_array_equal(cf, zarr.open_group(str(truth / ss.STORE_NAME), mode="r")["images"][:])
    targets = pd.read_parquet(plan).sort_values("plan_row")[list(AU_COLUMNS)].to_numpy()
    np.testing.assert_array_equal(synthetic_labels(tmp_path / "counterfactual")[list(AU_COLUMNS)].to_numpy(), targets)
    table = pd.read_csv(tmp_path / "payoff.csv", dtype={"au": str})
    for r in table[table["au"] != "mean"].itertuples():
        if np.isnan(r.real_mean):
            continue
        f1 = {}
        for arm in cfg.arms:
            g = scores[(scores.arm == arm) & (scores.au == int(r.au)) & (scores.label != -1) & (scores.status == "ok")]
            f1[arm] = 100 * f1_score(g["label"], g["present"], zero_division=0)
        assert r.sources_mean == pytest.approx(f1["real+sources"])
        assert r.counterfactual_mean == pytest.approx(f1["real+counterfactual"])
        assert r.counterfactual_delta == pytest.approx(f1["real+counterfactual"] - f1["real"])
        assert r.sources_delta == pytest.approx(f1["real+sources"] - f1["real"])
    text = md.read_text()
    assert "(control)" in text and "(ceiling)" in text and "Ceiling (" in text and "Control (" in text
    mean = table[table["au"] == "mean"].iloc[0]  # the page's readings: synthetic against the control and the ceiling
    assert f"{po._CONTROL_TEXT['sources'].note}: mean Δ {mean['sources_delta']:+.1f} against real only; the synthetic " \
           f"frames' content adds {mean['delta'] - mean['sources_delta']:+.1f} beyond the mixing." in text
    assert f"{po._CONTROL_TEXT['counterfactual'].note}: mean Δ {mean['counterfactual_delta']:+.1f} against real only; " \
           f"exact edits would add {mean['counterfactual_delta'] - mean['delta']:+.1f} over the synthetic frames." in text
    assert f"real + sources again (control) {mean['sources_auc']:.3f} (Δ {mean['sources_auc'] - mean['real_auc']:+.3f})" \
           in text and not np.isnan(mean["counterfactual_auc"])
    with pytest.raises(po.PayoffError, match="'oracle'"):
        po.PayoffConfig(controls=("oracle",))


@pytest.mark.slow
def test_jaanet_payoff_smoke(aligned_store, synth, tmp_path):
    cfg = po.PayoffConfig(detectors=("jaanet",), seeds=(0,),  # 2 seeds: hogsvm
                          configs={"jaanet": detector_preset("jaanet", "cpu", **SMALL_JAANET)})
    po.measure_payoff(aligned_store, synth, tmp_path, cfg)
    table = pd.read_csv(tmp_path / "payoff.csv", dtype={"au": str})
    assert list(table["detector"].unique()) == ["jaanet"] and len(table) == 13 and table["seeds"].iloc[0] == 1
    _, runs = po.read_payoff_scores(tmp_path / "scores.parquet")
    assert len(runs) == 2
    # the same budget: as many steps per epoch with the synthetic frames as without (module doc of jaanet.train)
    real, both = runs["jaanet-real-seed0"], runs["jaanet-real-synthetic-seed0"]
    assert real["steps_per_epoch"] == both["steps_per_epoch"] == real["train_frames"] // 16
    assert both["extra_frames"] == len(synthetic_extra(synth, aligned_store, 3).frames) and real["extra_frames"] == 0
    assert (f"Training budget, every arm and seed: 1 epochs × {real['steps_per_epoch']} steps of batch 16, lr 0.01 × "
            f"0.3 every 5 epochs; {real['train_frames']} real training frames" in (tmp_path / "payoff.md").read_text())


def test_budget_of_score_files_without_configs():
    """Score files written before the runs saved their configs say so rather than guess a budget."""
    old = {"jaanet-real-seed0": {"steps_per_epoch": 8, "train_frames": 128, "extra_frames": 0}}
    assert po.budget_text("jaanet", old) == "Training budget: not recorded (score files written before it was)."
    new = {k: {**v, "config": {"epochs": 18, "batch_size": 16, "lr": 0.01, "lr_gamma": 0.3, "lr_step": 5}}
           for k, v in old.items()}
    assert po.budget_text("jaanet", new).startswith("Training budget, every arm and seed: 18 epochs × 8 steps")


@pytest.fixture(scope="module")
def smoke_ckpt(aligned_store, tmp_path_factory):
    return train_smoke_lacgan(aligned_store, tmp_path_factory.mktemp("lacgan") / "run")


@pytest.mark.slow
def test_cli_trainset_and_payoff_with_the_real_editor(aligned_store, smoke_ckpt, tmp_path, capsys):
    from flows.cli import main

    ckpt = smoke_ckpt
    critic = tmp_path / "hogsvm"  # the edits' critic: a detector trained on the training folds
    train_detector("hogsvm", aligned_store, critic, detector_preset("hogsvm", "cpu"), test_fold=3)
    args = ["trainset", "--store", str(aligned_store), "--checkpoint", ckpt, "--out", str(tmp_path / "ts"),
            "--workers", "0", "--ratio", "0.5", "--critic", str(critic)]
    rc = main(args)
    text = capsys.readouterr().out
    assert rc == 0 and "real+synthetic" in text and (tmp_path / "ts" / "export" / "manifest.parquet").exists()
    assert "made unknown" in text and (tmp_path / "ts" / "synthetic" / "critic.parquet").exists()
    rc = main(args)  # the same command again: everything is done, nothing redone
    assert rc == 0 and "0 shards generated now" in capsys.readouterr().out
    rc = main(["payoff", "--trainset", str(tmp_path / "ts"), "--seeds", "0,1"])
    assert rc == 0 and "real + synthetic" in capsys.readouterr().out
    assert (tmp_path / "ts" / "payoff" / "payoff.png").exists()


def test_flow_tasks_build_the_set_and_measure_it(aligned_store, smoke_ckpt, tmp_path):
    """The flow's tasks, without the engine (task.fn): the same library steps as the CLI."""
    from flows import tasks

    from pipelines.generate import GenerateConfig
    from pipelines.trainset import TrainsetConfig

    from pipelines.trainset import synthetic_labels
    from pipelines.trainset_export import read_trainset

    critic = tmp_path / "hogsvm"
    train_detector("hogsvm", aligned_store, critic, detector_preset("hogsvm", "cpu"), test_fold=3)
    export = tasks.trainset.fn(str(aligned_store), smoke_ckpt, str(tmp_path / "ts"),
                               TrainsetConfig(ratio=0.5, critic="hogsvm"), GenerateConfig(workers=0), str(critic))
    assert json.loads((Path(export) / "trainset.json").read_text())["complete"]
    rows = read_trainset(export)
    used = synthetic_labels(tmp_path / "ts" / "synthetic")[list(AU_COLUMNS)].to_numpy()
    np.testing.assert_array_equal(rows.loc[rows.kind == "synthetic", list(AU_COLUMNS)].to_numpy(), used)
    md = tasks.payoff.fn(str(aligned_store), str(tmp_path / "ts" / "synthetic"), str(tmp_path / "payoff"),
                         po.PayoffConfig(detectors=("hogsvm",), seeds=(0,)))
    assert "hogsvm" in Path(md).read_text() and (tmp_path / "payoff" / "scores.parquet").exists()


def test_payoff_with_a_jobs_detector_configs(aligned_store, synth, tmp_path, monkeypatch, capsys):
    """`lacgan payoff --job OUT/job.json`: both arms train with the configs (and test fold) the job trained its
    detectors with; a detector the job did not train is refused, naming the file."""
    from flows.cli import main
    from pipelines.job import compose_job, write_job

    changes = {"test_fold": 2, "payoff": {"controls": ["counterfactual"]}}
    job = write_job(compose_job("demo", changes), tmp_path / "job.json")
    seen = []
    monkeypatch.setattr(po, "measure_payoff", lambda store, syn, out, cfg: seen.append(cfg) or _md(tmp_path))
    rc = main(["payoff", "--store", str(aligned_store), "--synthetic", str(synth), "--out", str(tmp_path / "p"),
               "--job", str(job), "--detector", "jaanet", "--epochs", "3"])
    assert rc == 0 and seen[0].test_fold == 2 and seen[0].controls == ("counterfactual",)  # the job's
    demo = compose_job("demo").detectors.jaanet
    assert seen[0].configs["jaanet"] == detector_preset("jaanet", "demo", epochs=3) and demo.epochs == 10
    smoke = write_job(compose_job("smoke"), tmp_path / "smoke.json")
    rc = main(["payoff", "--store", str(aligned_store), "--synthetic", str(synth), "--out", str(tmp_path / "p"),
               "--job", str(smoke), "--detector", "jaanet"])
    assert rc == 2 and f"{smoke}: the job has no jaanet detector" in capsys.readouterr().err
    rc = main(["payoff", "--store", str(aligned_store), "--synthetic", str(synth), "--out", str(tmp_path / "p"),
               "--job", str(job), "--controls", "none"])
    assert rc == 0 and seen[-1].controls == ()
    rc = main(["payoff", "--store", str(aligned_store), "--synthetic", str(synth), "--out", str(tmp_path / "p"),
               "--controls", "sources,oracle"])
    assert rc == 2 and "unknown payoff control 'oracle'" in capsys.readouterr().err


def _md(tmp_path):
    (tmp_path / "payoff.md").write_text("stand-in payoff page")
    return tmp_path / "payoff.md"
