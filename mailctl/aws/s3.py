"""S3 adapter: template bundles, attachments, job row files, and extended-client payloads."""

from __future__ import annotations

from collections.abc import Iterator

from mailctl.aws.errors import aws_call, error_code
from botocore.exceptions import ClientError



class S3Store:
    def __init__(self, client, bucket: str):
        self.client = client
        self.bucket = bucket

    def put(self, key: str, body: bytes, content_type: str = "application/octet-stream") -> None:
        with aws_call(f"bucket {self.bucket}"):
            self.client.put_object(Bucket=self.bucket, Key=key, Body=body, ContentType=content_type)

    def put_file(self, key: str, path: str) -> None:
        # One streamed PutObject: botocore reads the file in small blocks to sign and send it, where
        # upload_file's parts (ten 8 MiB parts in flight by default) cost tens of MB of memory.
        with aws_call(f"bucket {self.bucket}"), open(path, "rb") as body:
            self.client.put_object(Bucket=self.bucket, Key=key, Body=body)

    def exists(self, key: str) -> bool:
        return self._unless_missing(f"bucket {self.bucket}", lambda: self.client.head_object(Bucket=self.bucket, Key=key))

    def size(self, key: str, bucket: str | None = None) -> int | None:
        """The object's size in bytes, or None when it does not exist."""
        bucket = bucket or self.bucket
        head: dict = {}
        if not self._unless_missing(f"s3://{bucket}/{key}", lambda: head.update(self.client.head_object(Bucket=bucket, Key=key))):
            return None
        return int(head["ContentLength"])

    def get(self, key: str, bucket: str | None = None) -> bytes:
        with aws_call(f"s3://{bucket or self.bucket}/{key}"):
            return self.client.get_object(Bucket=bucket or self.bucket, Key=key)["Body"].read()

    def download(self, key: str, path: str) -> None:
        with aws_call(f"s3://{self.bucket}/{key}"):
            self.client.download_file(self.bucket, key, path)

    def copy(self, bucket: str, key: str, new_key: str) -> None:
        with aws_call(f"s3://{bucket}/{key}"):
            self.client.copy_object(Bucket=bucket, Key=new_key, CopySource={"Bucket": bucket, "Key": key})

    def rewrite(self, key: str, bucket: str | None = None, content_type: str = "application/json") -> bool:
        """Copy the object onto itself, which restarts its lifecycle age (reads do not); False
        when it is gone already."""
        bucket = bucket or self.bucket
        return self._unless_missing(f"s3://{bucket}/{key}", lambda: self.client.copy_object(
            Bucket=bucket, Key=key, CopySource={"Bucket": bucket, "Key": key},
            MetadataDirective="REPLACE", ContentType=content_type))

    def _unless_missing(self, what: str, call) -> bool:
        """Run `call`: True, or False when S3 says the object is not there."""
        try:
            call()
            return True
        except ClientError as exc:
            if error_code(exc) in {"404", "NoSuchKey", "NotFound"}:
                return False
            with aws_call(what):
                raise

    def keys(self, prefix: str, bucket: str | None = None) -> Iterator[str]:
        bucket = bucket or self.bucket
        with aws_call(f"s3://{bucket}/{prefix}"):
            for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
                yield from (item["Key"] for item in page.get("Contents", []))

    def delete(self, key: str, bucket: str | None = None) -> None:
        with aws_call(f"s3://{bucket or self.bucket}/{key}"):
            self.client.delete_object(Bucket=bucket or self.bucket, Key=key)

    def check_bucket(self) -> None:
        with aws_call(f"bucket {self.bucket}"):
            self.client.head_bucket(Bucket=self.bucket)

    def lifecycle_rules(self) -> list[dict]:
        """The bucket's lifecycle rules as S3 returns them; [] when it has no lifecycle configuration."""
        try:
            response = self.client.get_bucket_lifecycle_configuration(Bucket=self.bucket)
        except ClientError as exc:
            if error_code(exc) == "NoSuchLifecycleConfiguration":
                return []
            with aws_call(f"bucket {self.bucket}"):
                raise
        return response.get("Rules", [])
