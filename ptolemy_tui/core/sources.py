"""Which Source serves a target: `s3://BUCKET[/PREFIX]` is a bucket, anything else a local directory."""
from __future__ import annotations

from ptolemy_tui.core.source import Source
from ptolemy_tui.core.source_local import LocalSource

S3_SCHEME = "s3://"


def is_s3(target: str | None) -> bool:
    return bool(target) and target.startswith(S3_SCHEME)


def source_for(config, root: str | None = None) -> Source:
    """The Source of a project (anything with `target_dir` and the s3_* options); `root` (a worker's
    --source-root) overrides where the same tree is found on this host."""
    target = root or config.target_dir
    if is_s3(target):
        from ptolemy_tui.core.source_s3 import S3Source

        return S3Source(target, endpoint=getattr(config, "s3_endpoint", None),
                        region=getattr(config, "s3_region", None), profile=getattr(config, "s3_profile", None),
                        unsigned=bool(getattr(config, "s3_no_sign", False)))
    return LocalSource(target)
