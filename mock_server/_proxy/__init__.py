"""Proxy and replay: the fault layer in front of any HTTP service, or of a recorded HAR file.

``mock-server proxy --upstream URL`` forwards every request (``_forward``), optionally behind a
per-credential rate limit (``_limit``) and recording each exchange as HAR 1.2 (``_har``);
``mock-server replay FILE.har`` answers from a recording (``_replay``). Both are wrapped in the
same :class:`~mock_server._faults.FaultLayer` as the fake (``_app``), so rules, sessions, the
journal, the admin API, compliance and metrics work the same (a rule's ``when: after`` is the
fault layer's, ``_faults/_after``).
"""
