"""What a user relies on in the README: the paper named, the two commands,
and the results it quotes equal to the committed reference archives."""
import json
import re

from repo import REPO

from pipeline.datasets.registry import REGISTRY
from pipeline.report.archive import read, verify
from pipeline.report.tables import form_table, paper_value, table_rows

README = (REPO / "README.md").read_text()
REFERENCE = (REPO / "reports" / "reference" / "README.md").read_text()
ARCHIVES = sorted((REPO / "reports" / "reference").glob("softloss-archive-*.tar.gz"))


def test_the_front_door_names_the_paper_and_gives_the_two_commands_first():
    head = " ".join(README.splitlines()[:30])
    assert "arXiv:1804.10690" in head and "Negative Log Likelihood Ratio Loss" in head
    commands = [line for line in README.splitlines()[:60] if line.startswith("python3 -m venv .venv && ")]
    assert len(commands) == 2, "the main job and the tests, each one line, within the first 60 lines"
    main, tests = commands
    assert main.endswith("snakemake --cores 8 reports/summary.html")
    ci = (REPO / ".ci" / "run").read_text()
    assert "pip install --quiet -e '.[test]'" in ci and tests.endswith("python -m pytest -q") and "-m pytest -q" in ci
    assert len(README.splitlines()) <= 200


def _section(document, name):
    """The part of `document` from the heading above `name`'s first mention to the next heading."""
    where = document.index(name)
    start = document.rfind("\n#", 0, where)
    end = document.find("\n#", where)
    return document[start : end if end >= 0 else None]


def test_every_committed_archive_verifies_and_the_tables_that_name_it_quote_it():
    variants = {name: spec.variant_of for name, spec in REGISTRY.items() if spec.variant_of}
    assert ARCHIVES
    for archive in ARCHIVES:
        assert verify(archive) > 0 and archive.name in REFERENCE
        runs = json.loads(read(archive)["results/summary.json"])["runs"]
        sections = [_section(doc, archive.name) for doc in (README, REFERENCE) if archive.name in doc]
        for section in sections:
            for entry in form_table(table_rows(runs)):
                line = next(row for row in section.splitlines() if row.startswith(f"| {entry['loss'].upper()} |"))
                assert re.search(rf"\| {paper_value(entry['dataset'], entry['model'], entry['loss'], variants):.2f} \|", line)
                for form in ("exact", "keras"):
                    if entry[form] is not None and entry[form]["mean"] is not None:
                        assert f"{entry[form]['mean']:.2f}" in line, (archive.name, entry["loss"], form, line)
