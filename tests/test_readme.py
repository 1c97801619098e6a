"""What a user relies on in the README: the paper named, the two commands,
and the results it quotes equal to the committed reference archives."""

import json
import re

from repo import REPO

from pipeline.datasets.registry import REGISTRY
from pipeline.report.archive import main_summary, read, verify
from pipeline.report.tables import form_table, paper_value, table_rows

README = (REPO / "README.md").read_text()
REFERENCE = (REPO / "reports" / "reference" / "README.md").read_text()
ARCHIVES = sorted((REPO / "reports" / "reference").glob("softloss-*.tar.gz"))


def test_the_front_door_names_the_paper_and_gives_the_two_commands_first():
    head = " ".join(README.splitlines()[:30])
    assert "arXiv:1804.10690" in head and "Negative Log Likelihood Ratio Loss" in head
    commands = [line for line in README.splitlines()[:60] if line.startswith("python3 -m venv .venv && ")]
    assert len(commands) == 2, "the main job and the tests, each one line, within the first 60 lines"
    main, tests = commands
    assert main.endswith("snakemake --cores 8 reports/summary.html")
    ci = (REPO / ".ci" / "run").read_text()
    assert (
        "pip install --quiet -e '.[test]'" in ci
        and tests.endswith("python -m pytest -q")
        and "-m pytest -q" in ci
    )
    assert len(README.splitlines()) <= 200


def _section(document, name):
    """The part of `document` from the heading above `name`'s first mention to the next heading."""
    where = document.index(name)
    start = document.rfind("\n#", 0, where)
    end = document.find("\n#", where)
    return document[start : end if end >= 0 else None]


def _cells(line):
    return [cell.strip() for cell in line.strip().strip("|").split("|")]


def _table_one_rows_checked(section, runs, variants):
    """Table I (rows `| CE |`, `| BCE |`, `| NLLR |`): the paper's value and each form's mean."""
    if not any(line.startswith("| CE |") for line in section.splitlines()):
        return 0
    checked = 0
    for entry in form_table(table_rows(runs)):
        line = next(row for row in section.splitlines() if row.startswith(f"| {entry['loss'].upper()} |"))
        paper = paper_value(entry["dataset"], entry["model"], entry["loss"], variants)
        assert re.search(rf"\| {paper:.2f}( \((100|500)\))? \|", line), line
        for form in ("exact", "keras"):
            if entry[form] is not None and entry[form]["mean"] is not None:
                assert f"{entry[form]['mean']:.2f}" in line, (entry["loss"], form, line)
                # a cell's epochs and seeds, where it gives them: the archive's
                told = re.search(rf"{entry[form]['mean']:.2f}(?: ± [0-9.]+)? \((\d+), (\d+)\)", line)
                if told:
                    epochs, seeds = int(told.group(1)), int(told.group(2))
                    assert epochs in entry[form]["epochs"] and seeds == entry[form]["n"], (form, line)
        checked += 1
    return checked


def _ranking_cells_checked(section, runs, variants):
    """A ranking of losses, losses as columns (`` `ce` ``) and models as rows
    (`` `mnist_cnn`, 12 epochs ``), or losses as rows under a header naming
    each model's column (or none, where the archive has one model): every
    cell quotes the mean test accuracy of that loss."""
    means = {(row["model"], row["loss"]): row["mean"] for row in table_rows(runs, variants)}
    models = {model for model, _ in means}
    checked, header, columns = 0, None, {}
    for line in section.splitlines():
        if not line.startswith("|"):
            header, columns = None, {}
            continue
        cells = _cells(line)
        losses = [cell.strip("`") for cell in cells[1:]]
        named = {
            i: cell.split("`")[1]
            for i, cell in enumerate(cells)
            if cell.startswith("`") and cell.split("`")[1] in models
        }
        if not cells[0].startswith("`") and named:
            columns = named
        elif columns and cells[0].startswith("`"):
            for i, model in columns.items():
                assert cells[i] == f"{means[(model, cells[0].strip('`'))]:.2f}", (model, line)
                checked += 1
        elif all(any((m, loss) in means for m in models) for loss in losses) and all(
            c.startswith("`") for c in cells[1:]
        ):
            header = losses
        elif header and cells[0].startswith("`") and cells[0].split("`")[1] in models:
            model = cells[0].split("`")[1]
            for loss, cell in zip(header, cells[1:]):
                assert cell == f"{means[(model, loss)]:.2f}", (model, loss, cell)
                checked += 1
        elif len(models) == 1 and cells[0].startswith("`") and (*models, cells[0].strip("`")) in means:
            assert f"| {means[(*models, cells[0].strip('`'))]:.2f} |" in line, line
            checked += 1
    return checked


def test_every_committed_archive_verifies_and_the_tables_that_name_it_quote_it():
    variants = {name: spec.variant_of for name, spec in REGISTRY.items() if spec.variant_of}
    assert ARCHIVES
    for archive in ARCHIVES:
        assert verify(archive) > 0 and archive.name in REFERENCE
        contents = read(archive)
        runs = json.loads(contents[main_summary(contents)])["runs"]
        sections = [_section(doc, archive.name) for doc in (README, REFERENCE) if archive.name in doc]
        for section in sections:
            checked = _table_one_rows_checked(section, runs, variants) + _ranking_cells_checked(
                section, runs, variants
            )
            assert checked, f"{archive.name} is named beside no table of its results"
