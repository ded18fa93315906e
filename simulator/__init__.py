"""The Vericam hardware simulator: it plays the panel, camera, flash, clock and network around the real firmware."""
