"""dataflow-agent: the instrument computer's side of dataflow-lite.

``push`` sends files and folder trees into one dataset, ``watch`` sends each run folder as it is
completed, and every file sent gets a receipt: its sha256 at the source, where it landed, and
whether the server verified the same bytes there. ``clean`` deletes only what a receipt says is
verified and is unchanged since it was hashed.
"""
