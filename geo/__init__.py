"""Pure spatial library: projections, importers, the street graph and track math.

Takes and returns plain values; imports neither Flask nor ``safety_api``.
"""
