"""Typed, versioned events, the outbox that ships them and the buses that carry them."""
