"""The S3 adapter: message bodies offloaded by the SQS extended client, and template bundles."""

from __future__ import annotations

from botocore.exceptions import BotoCoreError, ClientError

from mail_sender.aws import LazyClient, error_code, http_status

_MISSING_CODES = frozenset({"NoSuchKey", "NoSuchBucket", "404", "NotFound", "AccessDenied", "403"})


class PayloadMissing(Exception):
    """The object is not there (or not ours to read): retrying will not help."""


class PayloadUnavailable(Exception):
    """S3 failed transiently: the record should be retried."""


class PayloadStore(LazyClient):
    service = "s3"

    def get(self, bucket: str, key: str) -> bytes:
        try:
            return self.client.get_object(Bucket=bucket, Key=key)["Body"].read()
        except ClientError as exc:
            code = error_code(exc)
            where = f"s3://{bucket}/{key}"
            if code in _MISSING_CODES or http_status(exc) in (403, 404):
                raise PayloadMissing(f"{where}: {code or http_status(exc)}") from None
            raise PayloadUnavailable(f"{where}: {code}: {exc}") from exc
        except BotoCoreError as exc:
            raise PayloadUnavailable(f"s3://{bucket}/{key}: {exc}") from exc
