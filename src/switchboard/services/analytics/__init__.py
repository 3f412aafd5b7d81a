"""The analytics service: aggregates over the event stream, as metrics, JSON and a
dashboard."""
