"""A study config checked the way a person can act on: one line per problem,
naming the file and line of a YAML syntax error, or the key path of a value the
schema refuses (never the schema itself).

    python -m pipeline check-config config/paper.yaml

The workflow runs the same schema check before any job (and, beyond it, builds
every run's model and optimizer with their real signatures).
"""

from __future__ import annotations

import re
from pathlib import Path

from ..common.errors import SoftlossError
from ..common.versions import checkout_path

# The checkout's files (wherever the command runs); the functions take others.
SCHEMA = checkout_path("workflow/schemas/config.schema.yaml")
DEFAULT = checkout_path("config/config.yaml")
NAME_PATTERN = r"[A-Za-z0-9][A-Za-z0-9_.-]*"  # the schema's `name`


def load_yaml(path):
    """The mapping in a YAML file; a SoftlossError naming file and line if it is not one."""
    import yaml

    path = Path(path)
    try:
        loaded = yaml.safe_load(path.read_text())
    except OSError as error:
        raise SoftlossError(f"{path}: cannot read it ({error.strerror})") from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        problem = getattr(error, "problem", None) or str(error).splitlines()[0]
        raise SoftlossError(f"{where}: YAML syntax error: {problem}") from None
    if not isinstance(loaded, dict):
        raise SoftlossError(f"{path}: a config file holds a mapping of keys, not {type(loaded).__name__}")
    return loaded


def merge(base, update):
    """`base` with `update` merged in as Snakemake merges --configfile files
    (snakemake.utils.update_config: nested mappings key by key, other values replaced)."""
    import copy

    from snakemake.utils import update_config

    merged = copy.deepcopy(base)
    update_config(merged, copy.deepcopy(update))
    return merged


def command_line_types(config, overrides):
    """`config` with the nested values of Snakemake's --config `overrides` (those
    of the command line alone, never a config file's) given YAML's types:
    Snakemake reads `--config 'stage={max_epochs: 100}'` with YAML's base loader,
    which leaves every nested scalar a string ('100')."""
    import yaml

    def typed(key, value):
        if isinstance(value, dict):
            return {k: typed(f"{key}/{k}", item) for k, item in value.items()}
        if isinstance(value, list):
            return [typed(f"{key}/{i}", item) for i, item in enumerate(value)]
        if not isinstance(value, str):
            return value
        try:
            return yaml.safe_load(value)
        except yaml.YAMLError as error:
            raise SoftlossError(
                f"--config {key}: {value!r} is not a YAML value ({str(error).splitlines()[0]})"
            ) from None

    nested = {key: typed(key, value) for key, value in overrides.items() if isinstance(value, (dict, list))}
    return merge(config, nested)


def config_name(config, configfiles=(), default=DEFAULT):
    """The study's name (its folder under results/, logs/ and reports/): the
    config's `name`, else the file name of the last of `configfiles` (the
    --configfile list) that is not the default config, else "default"."""
    if config.get("name"):
        return config["name"]  # the schema's pattern
    given = [Path(f) for f in configfiles if Path(f).resolve() != Path(default).resolve()]
    if not given:
        return "default"
    name = re.sub(r"\.(ya?ml|json)$", "", given[-1].name)
    if not re.fullmatch(NAME_PATTERN, name):
        raise SoftlossError(
            f"{given[-1]}: {name!r} cannot name the study's folders: set name: in the config "
            "(letters, digits, '_', '.', '-')"
        )
    return name


def schema_errors(config, schema_path=SCHEMA):
    """One line per value the schema refuses: 'experiments/0/batch_size: 0 is less than the minimum of 1'."""
    import jsonschema
    import yaml

    schema = yaml.safe_load(Path(schema_path).read_text())
    validator = jsonschema.validators.validator_for(schema)(schema)
    lines = []
    for error in sorted(validator.iter_errors(config), key=lambda e: [str(p) for p in e.absolute_path]):
        where = "/".join(str(p) for p in error.absolute_path) or "top level"
        lines.append(f"{where}: {error.message}")
    return lines


def check(config, studies, schema_path=SCHEMA):
    """(jobs, problems) of a merged config: the schema's problems, or else every
    run planned and one line per problem a run would hit before it starts. The
    one validation both `check-config` and the workflow run (the workflow has
    Snakemake check the schema, which fills in its defaults: `schema_path` None)."""
    from .jobs import plan, problems

    lines = schema_errors(config, schema_path) if schema_path else []
    if lines:
        return {}, lines
    try:
        jobs = plan(config, studies)
    except SoftlossError as error:
        return {}, [str(error)]
    return jobs, problems(jobs, config.get("datasets"))


def load_files(paths, default=DEFAULT):
    """The default config with `paths` merged in, as Snakemake merges --configfile files."""
    config = load_yaml(default)
    for path in paths:
        config = merge(config, load_yaml(path))
    return config


def check_files(paths, studies, default=DEFAULT, schema_path=SCHEMA):
    """(the study's name, its jobs, `check`'s problems) of the default config
    with `paths` merged in."""
    config = load_files(paths, default)
    jobs, problems = check(config, studies, schema_path)
    try:
        name = config_name(config, paths, default)
    except SoftlossError as error:
        name, problems = None, [*problems, str(error)]
    return name, jobs, problems
