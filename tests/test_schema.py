"""The config schema's lists of names are the package's registries: a model,
optimizer, loss, dataset or backend added in the code is accepted by the
schema too (and one removed is refused), or this test says which list to fix."""

import pytest
import yaml
from repo import REPO

from pipeline.common import lossnames
from pipeline.core import backend, losses, models, optim
from pipeline.datasets import registry
from pipeline.plan.configcheck import command_line_types
from pipeline.runs import feedback

SCHEMA = yaml.safe_load((REPO / "workflow/schemas/config.schema.yaml").read_text())


def _enums(node, path=""):
    """{path: enum} of every enum in the schema."""
    found = {}
    if isinstance(node, dict):
        if "enum" in node:
            found[path] = node["enum"]
        for key, value in node.items():
            found.update(_enums(value, f"{path}/{key}"))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            found.update(_enums(value, f"{path}/{i}"))
    return found


ENUMS = _enums(SCHEMA)
REGISTRIES = {
    "dataset": set(registry.REGISTRY),
    "model": set(models.MODELS),
    "optimizer": set(optim.OPTIMIZERS),
    "losses": set(losses.LOSSES),
    "backend": set(backend.BACKENDS),
    "wrong_labels": set(feedback.WRONG_LABELS),
    "treatments": set(feedback.TREATMENTS),
}


def _registry(path):
    for part in reversed(path.split("/")):
        if part in REGISTRIES:
            return part
        if part == "models":  # log_loss.models: model names as keys
            return "model"
    return None


@pytest.mark.parametrize("path", sorted(ENUMS))
def test_schema_enum_is_its_registry(path):
    name = _registry(path)
    assert name, f"{path}: an enum with no registry to compare with; add one here"
    if (
        path.startswith("/properties/studies") and name == "losses"
    ):  # log_loss compares exact and Keras forms with mse
        assert set(ENUMS[path]) == REGISTRIES["losses"] - set(lossnames.NEGATIVE_LOSSES), path
    else:
        assert set(ENUMS[path]) == REGISTRIES[name], (
            f"{path}: schema {sorted(ENUMS[path])}, code {sorted(REGISTRIES[name])}"
        )


def _names(requirements):
    """Distribution names of requirement strings ("snakemake[reports]>=8.20" -> "snakemake")."""
    import re

    return {
        re.split(r"[\[<>=!~ ;]", r.strip(), maxsplit=1)[0].lower() for r in requirements if isinstance(r, str)
    }


def test_the_conda_environments_list_every_runtime_dependency():
    """pip, `conda env create -f environment.yml` and the rules' own environment
    (`snakemake --use-conda`) install the same packages."""
    import tomllib

    wanted = _names(tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"])

    def conda_names(path):
        deps = yaml.safe_load((REPO / path).read_text())["dependencies"]
        pip = next((d["pip"] for d in deps if isinstance(d, dict)), [])
        return _names(
            d.replace("snakemake-minimal", "snakemake") for d in deps if isinstance(d, str)
        ) | _names(pip)

    assert wanted - conda_names("environment.yml") == set()
    assert (
        wanted - {"snakemake"} - conda_names("workflow/envs/softloss.yaml") == set()
    )  # snakemake runs the rules


def test_nested_command_line_values_get_yamls_types():
    """Snakemake reads `--config 'stage={max_epochs: 100, seeds: [1]}'` as strings all the way down."""

    config = {"stage": {"max_epochs": "100", "seeds": ["1"]}, "train_threads": 2, "mirrors": ["/m"]}
    typed = command_line_types(config, {"stage": {"max_epochs": "100", "seeds": ["1"]}, "train_threads": 2})
    assert typed == {"stage": {"max_epochs": 100, "seeds": [1]}, "train_threads": 2, "mirrors": ["/m"]}


def test_the_loss_name_tables_are_the_registries():
    from pipeline.core import baselines

    assert tuple(baselines.BASELINES) == lossnames.LITERATURE
    assert tuple(losses.WRONG_LABEL_LOSSES) == lossnames.NEGATIVE_LOSSES
    assert set(lossnames.LOSS_ORDER) == set(losses.LOSSES)
