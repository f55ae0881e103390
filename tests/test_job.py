"""The augment job's one typed configuration (pipelines.job): composed once, checked before any step runs, its
derived values (crop size, test fold) reaching every step; typos and wrong types named; deployments validating
their parameters; and the same small job run twice giving the same report, number for number."""

from __future__ import annotations

import json
import os
import tempfile

os.environ.setdefault("PREFECT_HOME", tempfile.mkdtemp(prefix="prefect-home-"))
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

from lacgan.config import LacganConfig  # noqa: E402
from lacgan.ganimation.config import GanimationConfig  # noqa: E402
from lacgan.typed import ConfigError, build, nest  # noqa: E402
from pipelines.job import PRESETS, JobConfig, compose_job, read_job, write_job  # noqa: E402


def test_presets_are_values_of_the_job_config_with_their_sections_presets():
    from detectors.hogsvm import PRESETS as HOG
    from detectors.jaanet.config import PRESETS as JAA
    from lacgan.config import preset

    demo = compose_job("demo")
    assert demo == PRESETS["demo"]  # a preset is already a composed job: composing changes nothing
    assert demo.lacgan == preset("demo") and demo.size == 64 == demo.baselines["ganimation"].net.size
    assert demo.detectors.jaanet == JAA["demo"] and demo.detectors.hogsvm == HOG["cpu"]
    assert demo.detectors.jaanet_minutes == 20.0  # the wall-clock safety net; the budget is the epochs
    assert compose_job("bp4d").size == 200 and compose_job("bp4d").cohort is None


def test_the_test_fold_is_pushed_to_every_section():
    job = compose_job("demo", {"test_fold": 2})
    assert job.lacgan.train.test_fold == job.plan.test_fold == job.trainset.test_fold == 2
    assert job.baselines["ganimation"].train.test_fold == 2
    from pipelines.job import payoff_config

    assert payoff_config(job).test_fold == 2 and payoff_config(job).configs["hogsvm"] == job.detectors.hogsvm


@pytest.mark.parametrize("changes, message", [
    ({"lacgan": {"train": {"stepz": 10}}}, "job.lacgan.train.stepz: unknown field"),
    ({"lacgan": {"train": {"steps": "many"}}}, "job.lacgan.train.steps: expected an integer, got 'many'"),
    ({"detectors": {"jaanet": {"epoch": 3}}}, "job.detectors.jaanet.epoch: unknown field"),
    ({"detectors": {"hogsvm": {"C": "small"}}}, "job.detectors.hogsvm.C: expected a number"),
    ({"lacgan": {"net": {"output": "sharp"}}}, "job.lacgan.net: NetConfig.output must be one of"),
    ({"plan": {"source": "happiest"}}, "job.plan: unknown source policy 'happiest'"),
    ({"cohort": {"subjects": 0}}, "job.cohort: CohortConfig: invalid subjects=0"),
    ({"test_fold": 4}, "job.test_fold: must be 1, 2 or 3"),
    ({"lacgan": {"train": {"test_fold": 2}}}, "job.lacgan.train.test_fold: derived, not configured; set test_fold"),
    ({"payoff": {"detectors": ["openface"]}}, "job.payoff.detectors: ['openface'] not among"),
    ({"trainset": {"critic": "openface"}}, "job.trainset.critic: 'openface' is not among the job's trained"),
    ({"payoff": {"controls": ["oracle"]}}, "job.payoff.controls: unknown payoff control 'oracle'"),
    ({"sise": 200}, "job.sise: unknown field"),
])
def test_a_typo_or_a_wrong_type_is_named(changes, message):
    with pytest.raises(ConfigError) as e:
        compose_job("demo", changes)
    assert str(e.value).startswith(message), str(e.value)


def test_the_counterfactual_ceiling_needs_the_embedded_cohort():
    with pytest.raises(ConfigError, match="job.payoff.controls: 'counterfactual' renders the embedded cohort"):
        compose_job("bp4d", {"trainset": {}, "payoff": {"controls": ["counterfactual"]}})
    from pipelines.job import payoff_config

    assert payoff_config(compose_job("demo")).controls == ()  # the demo's budget holds no ceiling arm
    asked = compose_job("demo", {"payoff": {"controls": ["counterfactual"]}})
    assert payoff_config(asked).controls == ("counterfactual",)
    assert compose_job("bp4d", {"trainset": {}, "payoff": {"controls": ["sources"]}}).payoff.controls == ("sources",)


def test_unknown_preset_is_named():
    with pytest.raises(ConfigError, match=r"job: unknown preset 'dmeo'; choose one of \['bp4d', 'demo', 'smoke'\]"):
        compose_job("dmeo")


def test_changes_compose_and_the_job_file_round_trips(tmp_path):
    job = compose_job("smoke", {"lacgan": {"train": {"steps": 7}}, "detectors": {"jaanet": {"epochs": 1}},
                                "plan": {"source": "neutral"}})
    assert job.lacgan.train.steps == 7 and job.detectors.jaanet.epochs == 1 and job.plan.source == "neutral"
    assert job.lacgan.net == PRESETS["smoke"].lacgan.net  # untouched sections keep the preset's values
    path = write_job(job, tmp_path / "job.json")
    assert read_job(path) == job
    data = json.loads(path.read_text())
    data["job"]["generate"]["frames_per_shrad"] = 8
    path.write_text(json.dumps(data))
    with pytest.raises(ConfigError, match=r"job.json: job.generate.frames_per_shrad: unknown field"):
        read_job(path)


def test_the_strict_builder_on_nested_configs():
    cfg = build(LacganConfig, {"preset": "x", "net": {"window": [28, 64], "enc_channels": [1, 2, 3, 4, 5]}})
    assert cfg.net.window == (28, 64) and cfg.net.enc_channels == (1, 2, 3, 4, 5)  # lists become tuples
    with pytest.raises(ConfigError, match=r"cfg.net.window: expected 2 values, got 3"):
        build(LacganConfig, {"net": {"window": [1, 2, 3]}}, "cfg")
    with pytest.raises(ConfigError, match=r"g.train.hflip: expected true or false, got 1"):
        build(GanimationConfig, {"train": {"hflip": 1}}, "g")
    assert nest(["a.b=1", "a.c=[1, 2]", "d=text"]) == {"a": {"b": 1, "c": [1, 2]}, "d": "text"}


class _Steps:
    """TEST RECORDER standing in for the flow's task module (flows.tasks): every step call is recorded with its
    arguments and returns a path-like string, so the flow's wiring is checked without running any step."""

    def __init__(self):
        self.calls: list[tuple[str, tuple, dict]] = []

    def __getattr__(self, name):
        def step(*args, **kwargs):
            self.calls.append((name, args, kwargs))
            return f"/recorded/{name}/{len(self.calls)}/report.md"

        step.with_options = lambda **_: step
        return step

    def args(self, name) -> list[tuple]:
        return [a for n, a, _ in self.calls if n == name]


def test_every_step_receives_the_jobs_crop_size_and_test_fold(tmp_path, monkeypatch):
    from flows import augment as fl

    steps = _Steps()
    monkeypatch.setattr(fl, "t", steps)
    monkeypatch.setattr(fl, "region_rule", lambda path: "wide")
    fl.augment.fn(out=str(tmp_path / "run"), preset="demo", test_fold=2, baseline="ganimation")
    (job, _), = steps.args("write_job")
    assert isinstance(job, JobConfig) and job.test_fold == 2 and job.size == 64
    assert [a[2] for a in steps.args("align")] == [64]  # crop size := the LAC-GAN net size
    assert steps.args("write_cohort")[0][1] == job.cohort
    gens = [a[2] for a in steps.args("train_generator")]
    assert [type(c) for c in gens] == [LacganConfig, GanimationConfig]
    assert all(c.net.size == 64 and c.train.test_fold == 2 for c in gens)
    dets = {a[0]: a for a in steps.args("train_detector")}
    assert set(dets) == {"jaanet", "hogsvm"} and all(a[6] == 2 for a in dets.values())
    assert dets["jaanet"][3] == job.detectors.jaanet and dets["jaanet"][5] == 20.0
    assert [a[2].test_fold for a in steps.args("make_plan")] == [2]
    assert [a[4] for a in steps.args("score")] == [2, 2]  # LAC-GAN's and the baseline's scores
    assert [a[3].test_fold for a in steps.args("trainset")] == [2]
    assert [a[3].test_fold for a in steps.args("payoff")] == [2]
    assert all(a[4] == job.generate for a in steps.args("generate"))
    assert [a[4].identity_pairs for a in steps.args("report")] == [32, 32]


def test_a_typo_fails_before_any_step_runs(tmp_path, monkeypatch, capsys):
    from flows import augment as fl
    from flows.cli import main

    steps = _Steps()
    monkeypatch.setattr(fl, "t", steps)
    with pytest.raises(ConfigError, match="job.detectors.jaanet.epoch: unknown field"):
        fl.augment.fn(out=str(tmp_path / "a"), config={"detectors": {"jaanet": {"epoch": 3}}})
    assert steps.calls == [] and not (tmp_path / "a").exists()
    rc = main(["augment", "--out", str(tmp_path / "b"), "--set", "lacgan.train.step=30"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and err[0].startswith("lacgan augment: error: job.lacgan.train.step: unknown")
    assert not (tmp_path / "b").exists()
    bad = tmp_path / "changes.json"
    bad.write_text('{"lacgan": {"train": {"steps": "30"}}}')
    rc = main(["augment", "--out", str(tmp_path / "c"), "--config", str(bad)])
    assert rc == 2 and "job.lacgan.train.steps: expected an integer, got '30'" in capsys.readouterr().err


def test_show_config_prints_the_composed_job(capsys):
    from flows.cli import main

    assert main(["augment", "--show-config", "--set", "lacgan.train.steps=30", "--test-fold", "1"]) == 0
    job = json.loads(capsys.readouterr().out)
    assert job["lacgan"]["train"]["steps"] == 30 and job["lacgan"]["train"]["test_fold"] == 1 == job["test_fold"]


def test_deployments_reject_a_wrong_parameter_type():
    from prefect.exceptions import ParameterTypeError

    from flows.augment import augment, train_detectors, train_lacgan

    for params in ({"test_fold": "three"}, {"config": "lacgan.train.steps=3"}, {"workers": "two"},
                   {"folds": "some"}):
        with pytest.raises(ParameterTypeError):
            augment.validate_parameters(params)
    assert augment.validate_parameters({"test_fold": 2, "config": {"lacgan": {"train": {"steps": 3}}}})
    for fl, params in ((train_lacgan, {"store": "s", "run_dir": "r"}), (train_detectors, {"store": "s", "out": "o"})):
        with pytest.raises(ParameterTypeError):
            fl.validate_parameters({**params, "test_fold": "x"})
        with pytest.raises(ParameterTypeError):
            fl.validate_parameters({**params, "config": ["lacgan"]})


def test_train_config_file_typo_exits_2_naming_the_field(tmp_path, capsys):
    from flows.cli import main
    from lacgan.run import write_model_config

    cfg = write_model_config(PRESETS["smoke"].lacgan, tmp_path / "lacgan.json")
    data = json.loads(cfg.read_text())
    data["loss"]["lambda_tv"] = 0.1
    cfg.write_text(json.dumps(data))
    rc = main(["train", "--store", str(tmp_path / "none.zarr"), "--out", str(tmp_path / "run"), "--config", str(cfg)])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and f"{cfg}: lacgan.loss.lambda_tv: unknown field" in err[0]
    assert not (tmp_path / "run").exists()


def _numbers(folder: Path, root: Path) -> dict:
    """Every JSON and CSV file of a report folder (the numbers of the report, the hashes of the weights and sets
    it reports on), with the run's own folder `root` written as OUT."""
    out = {}
    for p in sorted(folder.rglob("*")):
        if p.suffix in (".json", ".csv"):
            text = p.read_text().replace(str(root.resolve()), "OUT").replace(str(root), "OUT")
            out[str(p.relative_to(folder))] = json.loads(text) if p.suffix == ".json" else text
    return out


@pytest.mark.slow
def test_the_same_job_twice_gives_the_same_report(tmp_path):
    """The smoke job (cohort, align, LAC-GAN, HOG+SVM, plan, generation on 2 Dask workers, counterfactuals,
    scores, report) run twice into two folders: every number of the two reports is the same."""
    from prefect.testing.utilities import prefect_test_harness

    from flows.augment import augment

    with prefect_test_harness(server_startup_timeout=120):
        reports = [Path(augment(out=str(tmp_path / name), preset="smoke")).parent for name in ("a", "b")]
    a, b = (_numbers(r, tmp_path / name) for r, name in zip(reports, ("a", "b")))
    assert "table1.json" in a and "edits.json" in a and len(a) >= 4
    for name in a:
        assert a[name] == b[name], f"{name} differs between two runs of the same job"
    assert a.keys() == b.keys()
