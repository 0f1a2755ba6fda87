"""ptolemy_tui.cli's parser: a command's own module is the only one imported, and the map that says which module
adds which command is the one the modules register."""
from __future__ import annotations

import argparse
import importlib
import subprocess
import sys

import pytest

from ptolemy_tui.cli import COMMAND_MODULES, COMMANDS, VALUE_OPTIONS, build_parser, command_module
from ptolemy_tui.cli.common import OneLineParser, add_global_options


def test_the_command_map_is_what_the_modules_register():
    registered = {}
    for name in COMMAND_MODULES:
        sub = OneLineParser(prog="x").add_subparsers(dest="command", parser_class=OneLineParser)
        importlib.import_module(f"ptolemy_tui.cli.{name}").register(sub)
        registered.update(dict.fromkeys(sub.choices, name))
    assert COMMANDS == registered


def test_the_options_that_take_a_value_are_the_global_options():
    # command_module skips these with their values; a global option added without them would make it guess
    parser = argparse.ArgumentParser()
    add_global_options(parser)
    taking_one_value = {o for a in parser._actions if a.nargs is None for o in a.option_strings}
    assert set(VALUE_OPTIONS) == taking_one_value


@pytest.mark.parametrize("argv, module", [
    (["commp", "F"], "commp"),
    (["--db", "sqlite:///x.db", "status"], "projects"),
    (["--db=sqlite:///x.db", "--log-level", "DEBUG", "build", "p", "--wait"], "build"),
    (["--db", "status", "scan", "p"], "pipeline"),   # a database file named like a command is the option's value
    ([], None), (["--help"], None), (["--version"], None), (["bogus"], None),
    (["--lo", "commp", "status"], None),              # an abbreviated option: only the whole parser can tell
])
def test_which_module_the_arguments_name(argv, module):
    assert command_module(argv) == module


@pytest.mark.parametrize("argv", [["--db", "sqlite:///x.db", "status", "p"], ["status", "p", "--db", "sqlite:///x.db"],
                                  ["--log-level", "DEBUG", "car", "create", "F", "-o", "O"], ["commp", "F"]])
def test_the_lean_parser_parses_as_the_whole_one(argv):
    lean, whole = build_parser(argv).parse_args(argv), build_parser().parse_args(argv)
    assert vars(lean) == vars(whole)


def test_a_command_imports_only_its_own_module():
    code = ("import sys; from ptolemy_tui.cli import build_parser, COMMAND_MODULES; build_parser(['commp', 'F']); "
            "print(sorted(m for m in COMMAND_MODULES if 'ptolemy_tui.cli.' + m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "['commp']"


def test_help_and_mistakes_still_list_every_command(capsys):
    with pytest.raises(SystemExit):
        build_parser(["bogus"]).parse_args(["bogus"])
    err = capsys.readouterr().err
    assert all(f"'{name}'" in err for name in COMMANDS)
    assert isinstance(build_parser([]), argparse.ArgumentParser)
