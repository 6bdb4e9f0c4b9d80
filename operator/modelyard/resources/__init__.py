"""Pure builders of child manifests: typed spec in, manifest dict out, no I/O."""
