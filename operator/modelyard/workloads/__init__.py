"""What runs inside the images: ingest, train and serve. Each is a plain command too."""
