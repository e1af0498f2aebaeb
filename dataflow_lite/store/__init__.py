"""The catalog and where files land: tables, the database, migrations, queries."""
