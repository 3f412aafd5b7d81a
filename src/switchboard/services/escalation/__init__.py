"""The escalation service: rules over the event stream that act on live calls, once."""
