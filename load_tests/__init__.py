"""Load tests of the reference client against the fake, on locust.

``python -m load_tests run --scenario NAME --duration S --users N --out DIR`` starts the fake
with the scenario's faults (or targets ``--host``), runs locust headless in a child process
(``--processes N``, or ``--master`` with ``python -m load_tests worker`` for distributed runs),
and writes locust's CSV, JSON and HTML, PNG plots, ``summary.md`` and a one-page
``report.html``; thresholds (``thresholds.yaml``, k6 style) decide the exit code.
``python -m load_tests demo`` is ``make demo``: a naive and a resilient client side by side
under the ``chaos`` preset. :func:`load_tests.bench.compare_users` is the bench entry.

Nothing imported from this package's top level pulls in locust or gevent: only the locustfile
(``locustfile.py``, ``_users``, ``_hooks``) does, in locust's own processes.
"""
