"""kopf handlers, one module per kind; importing `runner` registers them all."""
