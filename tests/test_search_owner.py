"""The full-text row's ``owner`` column (revision 0012): written right, and out of reach of
every search (words are only ever matched in ``body``)."""

from __future__ import annotations

import sqlalchemy as sa

from dataflow_lite.store import sqlite_words
from tests.test_search import catalog, ids

__all__ = ["catalog"]  # the fixture, imported for pytest


def test_each_text_row_names_its_owner_and_no_search_reaches_it(client, auth, catalog, cli, app):
    """Revision 0012's ``owner`` column holds the creator's id; words only ever match ``body``
    (an admin's search for an owner's id finds the rows whose words hold it, not the owner's)."""
    with app.extensions["dataflow_lite.runtime"].engine.connect() as db:
        rows = db.execute(sa.text(
            "SELECT t.rowid, t.body, t.owner, d.creator_id FROM dataset_text AS t "
            "JOIN dataset AS d ON d.id = t.rowid"
        )).all()  # fmt: skip
    assert len(rows) == 5 and all(owner == str(creator) for _, _, owner, creator in rows)
    admin = {"Authorization": "Bearer " + cli.user_key("boss", admin=True)}
    for owner in {owner for _, _, owner, _ in rows}:
        for q in (owner, f'"{owner}"', f"owner:{owner}"):
            wanted = sorted(
                ident for ident, body, _, _ in rows
                for token in [sqlite_words.tokens(body)]
                if owner in token or (not q.startswith('"') and any(
                    word.startswith(owner) for word in token))
            )  # fmt: skip
            assert ids(client, admin, q) == ([] if q.startswith("owner:") else wanted), q
