"""Queue engine tests against a real SQLite database in a temporary directory."""
