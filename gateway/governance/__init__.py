"""The rules about personal data at the ARC: retention, police holds, the audit trail, data-subject rights, users, alarm handling, police export.

Each module states one rule and carries it out through the storage repositories; none writes
SQL and none knows about the web (the console and the CLI call in here).
"""
