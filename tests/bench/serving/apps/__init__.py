"""Small servers the benchmark starts: the peers' apps (run in their own venvs) and our ceiling."""
