"""``python -m switchboard.testing.fake_llm``: serve the fake in the foreground."""

from switchboard.testing.fake_llm.server import main

main()
