"""Services that consume the event bus, each in its own process: archive, analytics,
escalation. Each is idempotent (processed event ids kept with its writes) and acks a
batch only after its write is durable."""
