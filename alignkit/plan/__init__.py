"""Planning: from a checked spec to the job graph (the compiler), and the checks run before anything queues."""
