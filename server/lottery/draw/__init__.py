"""DRAW-1, the verifiable draw (SPEC §6): `merkle` (the entry log's tree), `protocol` (manifest,
tree heads, seed, selection, transcript) and `beacon` (the drand client). Pure functions and one
HTTP client: the draw service and the scheduler own the database side."""
