"""The Vericam gateway: verifies, stores and serves the verification photos at the alarm receiving centre."""
