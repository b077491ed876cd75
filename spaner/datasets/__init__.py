"""Dataset builders: seeded synthetic sets and the offline digits benchmark."""
