"""The side questions of the study, one module each, in a registry that the
command line and the workflow hand to the planner (pipeline.plan) and the
report (pipeline.report), which import no study themselves. A study module has

    NAME                     its key under `studies:` in the config, its Snakemake target
    runs(settings)           yields (run_id, entry, overrides) for each run it needs (run ids under
                             studies/NAME/): the planner builds each Job from the config block
                             `entry` and `overrides` (loss, seed, hyperparameters, feedback)
    view(runs, settings, inputs)  the data its part of the report shows
    INPUTS                   {name: path under the config's results folder} of files beside its
                             runs that `view` reads
    templates/NAME.html.j2   its part of the report (given `view`)

Adding a study: one module here, its entry in STUDIES, its template, its block
in the config schema.
"""

from . import knet_softmax, log_loss, negative_feedback

STUDIES = {study.NAME: study for study in (negative_feedback, log_loss, knet_softmax)}
