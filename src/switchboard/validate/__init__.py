"""``switchboard validate``: proof that a running deployment meets its profile.

``target`` finds what to check (a local cluster's state file or a URL), ``probes`` and
the checks of ``cache`` and ``events`` measure it, ``run`` orders the checks, ``report``
writes the verdict.
"""
