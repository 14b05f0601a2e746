"""Config's defaults are a quick, coherent run; no sweep's records depend on them."""

import dataclasses

import nbformat
import pytest
from papermill.parameterize import parameterize_notebook

from cldst import experiments, sweep
from cldst.config import Config
from cldst.paths import NOTEBOOKS_DIR


def test_the_defaults_warn_of_nothing_and_update_the_topology_every_task():
    from cldst.train import Trainer

    trainer = Trainer(Config(progress=False, device="cpu"))
    assert trainer.run_warnings() == []
    assert [trainer.updates_per_task(t) for t in range(10)] == [12] * 10  # 2 epochs of 63 batches, ΔT 10


@dataclasses.dataclass
class OtherDefaults(Config):
    """Config with every scale default changed (each still a valid value)."""

    dataset: str = "cifar100"
    num_tasks: int = 4
    image_size: int = 24
    train_per_class: int = 7
    test_per_class: int = 3
    width: int = 5
    variant: str = "cifar"
    density: float = 0.5
    update_frequency: int = 3
    epochs: int = 9
    batch_size: int = 17
    lr: float = 0.5


@pytest.mark.parametrize("profile", list(experiments.PROFILES))
def test_a_profiles_runs_do_not_depend_on_configs_defaults(profile, monkeypatch):
    def run_ids():
        return [c.run_id() for name in experiments.experiments_of(profile) for c in experiments.configs(name, profile)]

    before = run_ids()
    monkeypatch.setattr(experiments, "Config", OtherDefaults)
    assert run_ids() == before


def test_a_sweep_injects_every_field_so_the_notebooks_defaults_never_reach_a_record(tmp_path, monkeypatch):
    cfg = experiments.configs("adaptive", "smoke")[0]
    assert cfg.to_dict() != Config(experiment=cfg.experiment).to_dict()
    injected = {}

    def capture(source, target, parameters, **kwargs):
        injected.update(parameters)
        raise RuntimeError("captured")

    monkeypatch.setattr(sweep.notebook, "execute", capture)
    with pytest.raises(sweep.RunFailed, match="captured"):
        sweep.execute_run(cfg, root=tmp_path)
    # what the notebook's globals are after papermill's injection: its parameters cell, then the injected one
    nb = nbformat.read(NOTEBOOKS_DIR / "train.ipynb", as_version=4)
    for cell in nb.cells:
        cell.metadata.setdefault("tags", [])  # papermill's reader adds them too
    nb.metadata.setdefault("papermill", {})
    nb = parameterize_notebook(nb, injected)
    namespace = {}
    for cell in nb.cells:
        tags = cell.metadata.get("tags", [])
        if "parameters" in tags or "injected-parameters" in tags:
            exec(cell.source, namespace)
    assert Config.from_namespace(namespace) == cfg.replace(progress=False)
