"""``switchboard chaos``: a seeded fault runner for a running ``switchboard cluster``.

Shaped like a Jepsen test: a *generator* (simulated calls, ``generator.py``), a *nemesis*
(faults on a seeded schedule, ``schedule.py`` decides, ``nemesis.py`` acts), a recorded
*history* (``history.py``) and a *checker* that judges the history afterwards
(``checker.py``, pure). ``run.py`` ties them together; ``report.py`` renders the result.
"""
