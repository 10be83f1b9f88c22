"""Sans-IO wire protocols of the DashScope services (no sockets, no clocks)."""
