"""Mutation testing of ``contract_tests``: realistic bugs planted one at a time in a scratch copy.

Each mutant in :mod:`mutants._catalogue` is a small patch (one exact text replaced by another in
one file of ``client/`` or ``mock_server/``) with a one-line description and a probe: a small
program whose output must differ between the pristine copy and the mutated one, which shows the
mutant changes behaviour (an equivalent mutant is not counted; it fails the run instead). The
runner then runs ``contract_tests`` with the ``ci`` profile on the mutated copy and reports
whether it failed (the mutant is killed), by which test, and how long it took.

Run ``python -m mutants`` (``make mutants``); ``--help`` lists the options.
"""
