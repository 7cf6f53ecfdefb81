"""ui.print_table: the one table of `alignkit slurm status` and `alignkit sweep status`."""

from __future__ import annotations

import io

from alignkit import ui


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_piped_rows_are_tab_separated_lines_after_the_header(monkeypatch, capsys):
    ui.print_table(("JOBID", "NAME", "RESTARTS"), [("12", "[bold]x[/bold]", 3), ("13", "y", "")])
    assert capsys.readouterr().out == "JOBID\tNAME\tRESTARTS\n12\t[bold]x[/bold]\t3\n13\ty\t\n"


def test_on_a_terminal_a_rich_table_whose_cells_are_not_markup(monkeypatch):
    from rich.console import Console

    buf = _Tty()
    monkeypatch.setattr("sys.stdout", buf)
    monkeypatch.setattr(ui, "out_console", lambda: Console(file=buf, width=120, color_system=None))
    ui.print_table(["point", "state"], [["p00", "[red]done[/red]"]])
    lines = buf.getvalue().splitlines()
    assert lines[0].split() == ["point", "state"]
    assert lines[1].split() == ["p00", "[red]done[/red]"]
