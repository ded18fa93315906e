"""The storage boundary, the only code that writes SQL: engines and migrations, unit of work, one repository per area, blobs, keys, encryption at rest."""
