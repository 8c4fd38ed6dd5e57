"""task_argument: the positional, --task and no task at all, in upstream and in forks."""
from __future__ import annotations

import argparse

import pytest

from codemod_helpers import assert_codemod, code, run
from patcher.codemods.task_argument import TaskArgumentCommand
from patcher.errors import DriftError, PatchError

OPTS = "src/lib/opts.py"

UPSTREAM_STYLE = """
    import argparse

    class opts(object):
      def __init__(self):
        self.parser = argparse.ArgumentParser()
        self.parser.add_argument('task', default='ctdet',
                                 help='ctdet | ddd | multi_pose | exdet')
        self.parser.add_argument('--gpus', default='0')
    """

PATCHED = """
    import argparse

    class opts(object):
      def __init__(self):
        self.parser = argparse.ArgumentParser()
        self.parser.add_argument('task', nargs='?', default=argparse.SUPPRESS,
                                 help='ctdet | ddd | multi_pose | exdet')
        self.parser.add_argument('--task', dest='task', default='ctdet',
                                 help='same as the positional task')
        self.parser.add_argument('--gpus', default='0')
    """


def _parser(source: str) -> argparse.ArgumentParser:
    namespace: dict = {}
    exec(compile(source, OPTS, "exec"), namespace)
    return namespace["opts"]().parser


def test_upstream_form():
    assert_codemod(TaskArgumentCommand, OPTS, UPSTREAM_STYLE, PATCHED)


@pytest.mark.parametrize("argv, task, gpus", [
    ([], "ctdet", "0"),  # no task at all
    (["ddd"], "ddd", "0"),  # upstream's `main.py ddd`
    (["--task", "ddd"], "ddd", "0"),
    (["multi_pose", "--gpus", "1"], "multi_pose", "1"),
    (["--gpus", "1", "ddd"], "ddd", "1"),
    (["ctdet", "--task", "ddd"], "ddd", "0"),  # both: the later one wins
    (["--task", "ddd", "ctdet"], "ctdet", "0"),
])
def test_patched_parser_accepts_every_form(argv, task, gpus):
    before = _parser(code(UPSTREAM_STYLE))
    if argv in ([], ["--task", "ddd"]):
        with pytest.raises(SystemExit):  # upstream: the task is required and positional
            before.parse_args(argv)
    parsed = _parser(run(TaskArgumentCommand, OPTS, UPSTREAM_STYLE).new_source).parse_args(argv)
    assert (parsed.task, parsed.gpus) == (task, gpus)


def test_fork_with_empty_default_and_four_space_indentation():
    result = assert_codemod(TaskArgumentCommand, OPTS, """
        from argparse import ArgumentParser

        class opts:
            def __init__(self):
                self.parser = ArgumentParser()
                self.parser.add_argument('task', default='')
        """, """
        from argparse import ArgumentParser
        import argparse

        class opts:
            def __init__(self):
                self.parser = ArgumentParser()
                self.parser.add_argument('task', nargs='?', default=argparse.SUPPRESS)
                self.parser.add_argument('--task', dest='task', default='ctdet',
                                         help='same as the positional task')
        """)
    assert _parser(result.new_source).parse_args([]).task == "ctdet"


def test_recipe_form_gets_the_positional_back():
    result = assert_codemod(TaskArgumentCommand, OPTS, """
        import argparse
        parser = argparse.ArgumentParser()
        parser.add_argument('--task', default='', help='ctdet | ddd')
        """, """
        import argparse
        parser = argparse.ArgumentParser()
        parser.add_argument('task', nargs='?', default=argparse.SUPPRESS, help='ctdet | ddd | multi_pose | exdet')
        parser.add_argument('--task', default='ctdet', help='ctdet | ddd')
        """)
    namespace: dict = {}
    exec(result.new_source, namespace)
    assert namespace["parser"].parse_args(["ddd"]).task == "ddd"
    assert namespace["parser"].parse_args([]).task == "ctdet"


def test_drift_lists_the_arguments_found():
    with pytest.raises(DriftError, match=r"src/lib/opts.py: task_argument: expected the "
                                         r"target; found add_argument calls for '--dataset', "
                                         r"'--gpus'"):
        run(TaskArgumentCommand, OPTS, """
            import argparse
            p = argparse.ArgumentParser()
            p.add_argument('--dataset', default='coco')
            p.add_argument('--gpus', default='0')
            """)


def test_a_task_declared_twice_is_refused():
    with pytest.raises(PatchError, match=r"opts.py:2: task_argument: cannot rewrite .*declared "
                                         r"more than once \(line 1\)"):
        run(TaskArgumentCommand, OPTS, """
            p.add_argument('task', default='ctdet')
            p.add_argument('task', default='ddd')
            """)
