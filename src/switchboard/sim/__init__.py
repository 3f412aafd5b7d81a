"""The Retell platform simulator: plays Retell's side of the custom-LLM protocol."""
