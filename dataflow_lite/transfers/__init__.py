"""The durable transfer queue that moves staged files to their endpoints."""
