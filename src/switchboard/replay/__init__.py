"""``switchboard replay``: recorded calls played again against an agent, and compared.

``source`` reads recorded calls (Retell call objects or the transcript archive) into
``RecordedCall``; ``plan`` turns one into a caller script timed by its recording;
``run`` plays the scripts through the simulator's caller; ``compare`` judges what came
back; ``report`` writes the JSON summary, the HTML page and JUnit XML. ``export`` goes
the other way: the archive as Retell call objects.
"""
