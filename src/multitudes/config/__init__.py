"""What a run is made of: its typed config, the genomes of its members, and the TOML presets and
--set overrides they are read from."""
