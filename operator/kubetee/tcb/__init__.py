"""TCB recovery: each SGX node's TCB status under the newest TCB evaluation (node labels),
placement by it, and moving replicas off platforms their policy no longer accepts."""
