"""Both command lines explain every option (`--help`) and keep their documented exit codes."""

import argparse

import pytest


def _parsers():
    from mtc_perception.cli import build_parser as mtc

    out = [("mtc", mtc())]
    try:
        from compress.cli import build_parser as comp

        out.append(("mtc-compress", comp()))
    except ImportError:  # the offline half needs torch
        pass
    return out


def _walk(name, parser):
    yield name, parser
    for act in parser._actions:
        if isinstance(act, argparse._SubParsersAction):
            for sub, p in act.choices.items():
                yield from _walk(f"{name} {sub}", p)


@pytest.mark.parametrize("prog,parser", _parsers(), ids=lambda v: v if isinstance(v, str) else "")
def test_every_option_and_command_has_help(prog, parser):
    missing = []
    for name, p in _walk(prog, parser):
        for act in p._actions:
            if isinstance(act, (argparse._HelpAction, argparse._SubParsersAction)):
                continue
            if not (act.help and act.help.strip()) or act.help == argparse.SUPPRESS:
                missing.append(f"{name} {'/'.join(act.option_strings) or act.dest}")
    assert not missing, f"options without help text: {missing}"
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    for s in subs:
        for choice in s._choices_actions:
            assert choice.help, f"{prog} {choice.dest} has no one-line help"


def test_bad_input_exits_2_with_a_message(tmp_path, logs):
    from mtc_perception.cli import main

    assert (
        main(["infer", "--bundle", str(tmp_path / "nope"), "--input", str(tmp_path), "--out", str(tmp_path / "o")]) == 2
    )
    assert "is not a model bundle" in logs.text
    with pytest.raises(SystemExit) as e:  # argparse: unknown option
        main(["bench", "--bag"])
    assert e.value.code == 2
