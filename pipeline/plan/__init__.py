"""From a config to jobs: config checks (configcheck) and the planner (jobs),
which builds a RunConfig per run. Imports pipeline.runs' config and below;
the side studies are handed to it, never imported."""
