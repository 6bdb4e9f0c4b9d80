"""Every S3 call goes through this package: configuration, URIs, digests, artifact layout."""
