"""``switchboard blueprint``: from the decision matrix to deployment files and their proof.

``matrix`` and ``capacity`` decide (pure functions), ``model`` holds the one deployment
every file is rendered from, ``render_*`` turn it into files, ``writer`` puts them on
disk all or nothing, and ``validate`` checks a running deployment against its profile.
"""
