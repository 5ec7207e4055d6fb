"""The gateway's client: profiles, HTTP, push, pull, access and audit commands."""
