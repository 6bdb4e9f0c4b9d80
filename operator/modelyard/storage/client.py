"""The one S3 client factory, and the handful of object operations the workloads need."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO, cast

import boto3
from boto3.exceptions import S3UploadFailedError
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError
from urllib3.exceptions import HTTPError

from modelyard.storage.config import StorageConfig
from modelyard.storage.uri import S3Uri

# 8 MiB parts, four in flight: a few dozen MiB buffered, and large files go in parallel parts.
_TRANSFER = TransferConfig(
    multipart_threshold=8 << 20,
    multipart_chunksize=8 << 20,
    max_concurrency=4,
    max_io_queue=8,
)


class ObjectNotFound(LookupError):
    """The object (or every object under a prefix) does not exist."""


class StorageUnavailable(ConnectionError):
    """S3 could not be reached, or a transfer broke off part-way; trying later may succeed."""


class _Body(io.RawIOBase):
    """An object's body as a file, whose reads fail as StorageUnavailable when S3 goes away.

    Without this, a connection reset part-way surfaces as whichever urllib3 or botocore
    exception the reading library (pyarrow, here) happened to trigger.
    """

    def __init__(self, body: Any, uri: S3Uri) -> None:
        super().__init__()
        self.body = body
        self.uri = uri

    def readable(self) -> bool:
        return True

    def read(self, size: int | None = -1) -> bytes:
        try:
            data: bytes = self.body.read(None if size is None or size < 0 else size)
        except (BotoCoreError, HTTPError, OSError) as error:
            raise StorageUnavailable(f"reading {self.uri} broke off: {error}") from None
        return data

    def readinto(self, buffer: Any) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def close(self) -> None:
        self.body.close()
        super().close()


class Storage:
    """S3 access for one configuration; cheap to create, safe to share across threads."""

    def __init__(self, config: StorageConfig) -> None:
        self.config = config
        # A session of its own: boto3's shared default session resolves credentials once per
        # process, so a Storage made after the environment changed would sign with old keys.
        self.client: Any = boto3.session.Session().client(
            "s3",
            endpoint_url=config.endpoint,
            region_name=config.region,
            config=Config(
                s3={"addressing_style": "path" if config.path_style else "auto"},
                retries={"max_attempts": config.max_attempts, "mode": "standard"},
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
        try:
            self.client.upload_file(str(path), uri.bucket, uri.key, Config=_TRANSFER)
        except S3UploadFailedError as error:
            raise StorageUnavailable(f"uploading {uri}: {error}") from None

    def get_bytes(self, uri: S3Uri) -> bytes:
        body: bytes = self.open(uri).read()
        return body

    def get_json(self, uri: S3Uri) -> Any:
        return json.loads(self.get_bytes(uri))

    def open(self, uri: S3Uri) -> BinaryIO:
        """A streaming reader: large objects are never held in memory whole."""
        try:
            body = self.client.get_object(Bucket=uri.bucket, Key=uri.key)["Body"]
        except ClientError as error:
            if _is_missing(error):
                raise ObjectNotFound(str(uri)) from None
            raise
        return cast(BinaryIO, _Body(body, uri))

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
