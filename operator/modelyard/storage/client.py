"""The one S3 client factory, and the handful of object operations the workloads need."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

import boto3
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import ClientError

from modelyard.storage.config import StorageConfig
from modelyard.storage.uri import S3Uri

# 16 MiB parts, four in flight: at most ~100 MiB buffered, and large files go in parallel parts.
_TRANSFER = TransferConfig(
    multipart_threshold=16 << 20,
    multipart_chunksize=16 << 20,
    max_concurrency=4,
    max_io_queue=8,
)


class ObjectNotFound(LookupError):
    """The object (or every object under a prefix) does not exist."""


class Storage:
    """S3 access for one configuration; cheap to create, safe to share across threads."""

    def __init__(self, config: StorageConfig) -> None:
        self.config = config
        self.client: Any = boto3.client(
            "s3",
            endpoint_url=config.endpoint,
            region_name=config.region,
            config=Config(
                s3={"addressing_style": "path" if config.path_style else "auto"},
                retries={"max_attempts": 5, "mode": "standard"},
            ),
        )

    def ensure_bucket(self, bucket: str) -> None:
        try:
            self.client.head_bucket(Bucket=bucket)
        except ClientError:
            self.client.create_bucket(Bucket=bucket)

    def put_bytes(
        self, uri: S3Uri, data: bytes, content_type: str = "application/octet-stream"
    ) -> None:
        self.client.put_object(Bucket=uri.bucket, Key=uri.key, Body=data, ContentType=content_type)

    def put_json(self, uri: S3Uri, document: Any) -> None:
        body = json.dumps(document, indent=2, sort_keys=True).encode()
        self.put_bytes(uri, body, "application/json")

    def upload_file(self, path: Path, uri: S3Uri) -> None:
        """Multipart for large files, with a bounded number of parts in memory at once."""
        self.client.upload_file(str(path), uri.bucket, uri.key, Config=_TRANSFER)

    def get_bytes(self, uri: S3Uri) -> bytes:
        body: bytes = self.open(uri).read()
        return body

    def get_json(self, uri: S3Uri) -> Any:
        return json.loads(self.get_bytes(uri))

    def open(self, uri: S3Uri) -> BinaryIO:
        """A streaming reader: large objects are never held in memory whole."""
        try:
            stream: BinaryIO = self.client.get_object(Bucket=uri.bucket, Key=uri.key)["Body"]
        except ClientError as error:
            if _is_missing(error):
                raise ObjectNotFound(str(uri)) from None
            raise
        return stream

    def download_file(self, uri: S3Uri, path: Path) -> None:
        try:
            self.client.download_file(uri.bucket, uri.key, str(path))
        except ClientError as error:
            if _is_missing(error):
                raise ObjectNotFound(str(uri)) from None
            raise

    def exists(self, uri: S3Uri) -> bool:
        try:
            self.client.head_object(Bucket=uri.bucket, Key=uri.key)
        except ClientError as error:
            if _is_missing(error):
                return False
            raise
        return True

    def list(self, prefix: S3Uri) -> Iterator[S3Uri]:
        """Every object under a prefix, in key order."""
        paginator = self.client.get_paginator("list_objects_v2")
        try:
            for page in paginator.paginate(Bucket=prefix.bucket, Prefix=prefix.key):
                for item in page.get("Contents", []):
                    yield S3Uri(prefix.bucket, item["Key"])
        except ClientError as error:
            if _is_missing(error):
                raise ObjectNotFound(str(prefix)) from None
            raise


def _is_missing(error: ClientError) -> bool:
    code = str(error.response.get("Error", {}).get("Code", ""))
    return code in {"404", "NoSuchKey", "NoSuchBucket", "NotFound"}
