"""HTTP API: one blueprint per area; views parse, call a service, shape the answer."""
