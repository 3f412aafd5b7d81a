"""``switchboard blueprint``: from the decision matrix to deployment files.

``matrix`` and ``capacity`` decide (pure functions), ``model`` holds the one deployment
every file is rendered from, ``render_*`` turn it into files, and ``writer`` puts them on
disk all or nothing. ``switchboard.validate`` checks a running deployment against its
profile.
"""
