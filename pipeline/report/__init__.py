"""Results -> summary, report and archive: aggregation, Table I and its
statistics, the losses at equal epochs, figures, provenance, the HTML report
and its templates, and archives. Imports pipeline.runs' file formats
(rundir) and pipeline.common only: no kernel, model or data code."""
