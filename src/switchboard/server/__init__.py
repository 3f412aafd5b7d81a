"""The ASGI shell: routes, admission, auth, drain. Thin: wiring and HTTP concerns only."""
