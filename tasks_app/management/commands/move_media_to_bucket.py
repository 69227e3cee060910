"""Copy the files jobs reference from this machine's MEDIA_ROOT into the configured bucket.

Run it once a bucket is configured (AWS_STORAGE_BUCKET_NAME), on the machine that has the
files, as often as needed: what is already in the bucket is skipped. It deletes nothing.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.files.storage import FileSystemStorage
from django.core.management.base import BaseCommand, CommandError, CommandParser

from tasks_app.storage import Copied, bucket, media_copy_to_bucket, media_names


class Command(BaseCommand):
    help = (
        "Copy every file a job references (uploads, audio, posters, result copies) from "
        "MEDIA_ROOT into the bucket named by AWS_STORAGE_BUCKET_NAME, under the same names. "
        "Idempotent: files already there with the same size are skipped. Deletes nothing."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--dry-run",
            action="store_true",
            help="Say what would be copied, and copy nothing.",
        )
        parser.add_argument(
            "--from",
            dest="source",
            default=None,
            help="The folder the files are in (default: MEDIA_ROOT).",
        )
        parser.add_argument(
            "--every",
            type=int,
            default=10,
            help="Print a progress line every this many files (default: 10).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        target = bucket()
        if target is None:
            raise CommandError(
                "No bucket is configured: the studio's files are on this machine's disk. "
                "Set AWS_STORAGE_BUCKET_NAME (with AWS_S3_ENDPOINT_URL, AWS_S3_REGION_NAME, "
                "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY as your object store needs), "
                "then run this again."
            )
        folder = Path(options["source"] or settings.MEDIA_ROOT)
        if not folder.is_dir():
            raise CommandError(f"There is no folder {folder} to copy from (see --from).")
        dry_run: bool = options["dry_run"]
        every = max(1, options["every"])
        names = media_names()
        total = len(names)
        copied = "would copy" if dry_run else "copied"
        self.stdout.write(
            f"{total} files referenced by jobs; copying from {folder} into the bucket "
            f"{target.bucket_name}{' (dry run: nothing is copied)' if dry_run else ''}."
        )
        counts: Counter[Copied] = Counter()
        steps = media_copy_to_bucket(
            names=names,
            source=FileSystemStorage(location=folder),
            target=target,
            dry_run=dry_run,
        )
        for done, (name, outcome, detail) in enumerate(steps, start=1):
            counts[outcome] += 1
            if outcome in (Copied.MISSING_HERE, Copied.DIFFERENT_THERE, Copied.FAILED):
                self.stderr.write(f"{name}: {outcome.value}{f' ({detail})' if detail else ''}")
            if done % every == 0 or done == total:
                self.stdout.write(f"{done}/{total} {self._tally(counts, copied)}")
        if total == 0:
            self.stdout.write("Nothing to copy: no job references a stored file.")
        if counts[Copied.FAILED]:
            raise CommandError(
                f"{counts[Copied.FAILED]} files could not be copied (above); run this again "
                "once the bucket answers: what was copied is kept."
            )
        if dry_run:
            self.stdout.write(self.style.SUCCESS("Dry run: nothing was copied."))
            return
        self.stdout.write(
            self.style.SUCCESS(
                f"Done. The local files were left in {folder}. Once the studio runs on the "
                "bucket and a few jobs' videos play from it, delete them yourself "
                f"(for example: rm -r {folder}); run this again first if new files came in."
            )
        )

    @staticmethod
    def _tally(counts: Counter[Copied], copied: str) -> str:
        parts = [
            f"{counts[Copied.COPIED]} {copied}",
            f"{counts[Copied.ALREADY_THERE]} already there",
        ]
        parts += [
            f"{counts[outcome]} {outcome.value}"
            for outcome in (Copied.MISSING_HERE, Copied.DIFFERENT_THERE, Copied.FAILED)
            if counts[outcome]
        ]
        return ", ".join(parts)
