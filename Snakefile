# softloss: `snakemake --cores 8 reports/summary.html` (see README.md).
import sys
from pathlib import Path

from snakemake.exceptions import WorkflowError
from snakemake.utils import min_version, validate

min_version("8.20")


configfile: "config/config.yaml"


report: "workflow/report/workflow.rst"


from pipeline.common.errors import SoftlossError
from pipeline.plan.configcheck import command_line_types

try:  # --config's own values; a config file's reach the jobs exactly as written
    config.update(command_line_types(config, workflow.config_settings.config))
except SoftlossError as error:
    print(f"config error: {error}", file=sys.stderr)
    raise SystemExit(1)


try:
    validate(config, "workflow/schemas/config.schema.yaml")  # also fills in the schema's defaults
except WorkflowError:  # one line per problem, not Snakemake's dump of the whole schema
    from pipeline.plan.configcheck import schema_errors

    for line in schema_errors(config, Path(workflow.basedir) / "workflow" / "schemas" / "config.schema.yaml"):
        print(f"config error: {line}", file=sys.stderr)
    raise SystemExit(1)


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/report.smk"


rule all:
    default_target: True
    input:
        "reports/summary.html",
