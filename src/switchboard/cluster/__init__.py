"""Local stacks from real parts: valkey-server, HAProxy and switchboard nodes as processes."""
