"""`s3://bucket/key` URIs, parsed and validated in one place."""

from __future__ import annotations

import re
from dataclasses import dataclass

_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9]$")


class InvalidUri(ValueError):
    """Not an s3:// URI we can use; the message says what is wrong with it."""


@dataclass(frozen=True)
class S3Uri:
    bucket: str
    key: str = ""

    @classmethod
    def parse(cls, uri: str) -> S3Uri:
        if not uri.startswith("s3://"):
            raise InvalidUri(f"{uri!r}: expected s3://bucket/key")
        bucket, _, key = uri.removeprefix("s3://").partition("/")
        if not _BUCKET.match(bucket):
            raise InvalidUri(f"{uri!r}: {bucket!r} is not a valid bucket name")
        if "//" in key or key.startswith("/"):
            raise InvalidUri(f"{uri!r}: empty path segment in key")
        return cls(bucket, key)

    def join(self, *parts: str) -> S3Uri:
        key = "/".join(p.strip("/") for p in (self.key, *parts) if p.strip("/"))
        return S3Uri(self.bucket, key)

    @property
    def is_prefix(self) -> bool:
        return self.key == "" or self.key.endswith("/")

    def __str__(self) -> str:
        return f"s3://{self.bucket}/{self.key}"
