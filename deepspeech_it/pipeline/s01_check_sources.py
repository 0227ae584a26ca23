"""Stage 01 as the pipeline runs it: every check, one line each, a report file, and a verdict."""

from __future__ import annotations

from pathlib import Path

from deepspeech_it.config import Config
from deepspeech_it.pipeline import preflight as checks
from deepspeech_it.pipeline.corpus_checks import check_corpus
from deepspeech_it.pipeline.preflight import Finding
from deepspeech_it.pipeline.records import StageRecord, fingerprint
from deepspeech_it.util.atomic import write_json_atomic
from deepspeech_it.util.digest import file_digest
from deepspeech_it.util.progress import bars_wanted


def check_sources(config: Config) -> int:
    layout = config.layout
    layout.create()
    show = bars_wanted(config.progress)
    findings, found, needed = [], [], 0
    for corpus in config.corpora:
        corpus_findings, size = _cv_findings(config) if corpus == "cv" else check_corpus(corpus, config, show)
        findings += corpus_findings
        needed += size
        if corpus_findings[0].ok:
            found.append(corpus)
    missing = [corpus for corpus in config.corpora if corpus not in found]
    # Each missing corpus already has its blocking line; this one only sums them up.
    findings.append(Finding(not missing, f"corpora found: {', '.join(found) or 'none'}"
                            + (f"; missing: {', '.join(missing)}" if missing else ""), blocking=False))
    findings += checks.check_data_dir(config.data_dir, needed)
    findings += checks.check_tools()
    findings += checks.check_gpus()
    if config.transfer_learning:
        findings += checks.check_transfer_checkpoint(config.transfer_checkpoint_dir)
    for finding in findings:
        print(finding.line())
    blocking = [f for f in findings if not f.ok and f.blocking]
    write_json_atomic(layout.reports / "check_sources.json", {
        "configuration": config.as_dict(),
        "findings": [{"ok": f.ok, "blocking": f.blocking, "message": f.message} for f in findings],
    })
    print(f"stage 01: {len(blocking)} blocking problem(s), "
          f"{sum(not f.ok and not f.blocking for f in findings)} warning(s)")
    return 1 if blocking else 0


def _cv_findings(config: Config) -> tuple[list[Finding], int]:
    present = checks.check_archive_present(config.cv_archive)
    if not present.ok:
        return [present], 0
    return ([present, _archive_identity(config, config.layout.sources), checks.check_archive_readable(config.cv_archive)],
            config.cv_archive.stat().st_size)


def _archive_identity(config: Config, record_folder: Path) -> Finding:
    """Checksums the archive, unless this very file (same size and time) was already checked with the same
    expectations: hashing ten gigabytes on every run would cost minutes."""
    record = StageRecord(record_folder, "check_sources")
    fp = fingerprint({"CV_SHA256": config.cv_sha256, "CV_SHA1": config.cv_sha1, "stream_checked": True},
                     [config.cv_archive])
    previous = record.read()
    if record.is_current(fp) and previous and previous.get("summary", {}).get("ok"):
        summary = previous["summary"]
        return Finding(True, summary["message"] + " (checksum cached)")
    print(f"checksumming {config.cv_archive} ...")
    digests = checks.archive_digests(config.cv_archive, bars_wanted(config.progress))
    finding = checks.identify_archive(digests, config.cv_sha256, config.cv_sha1)
    if digests.damage and finding.ok:
        return checks.Finding(False, f"CV_ARCHIVE {config.cv_archive} is {digests.damage}; download it again")
    if finding.ok:
        record.mark_done(fp, summary={"ok": True, "message": finding.message, "sha256": digests.sha256,
                                      "sha1": digests.sha1, "identity": file_digest(config.cv_archive)})
    return finding
