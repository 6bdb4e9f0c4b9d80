"""What a namespace may ask of the operator: which images run, which storage it may read."""
