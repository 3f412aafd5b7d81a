"""The ``EventBus`` backends, one module each: ``memory``, ``redis`` (Streams), ``kafka``."""
