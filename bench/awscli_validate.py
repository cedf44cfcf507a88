#!/usr/bin/env python3
"""Drive the AWS CLI's own CloudTrail validation code against the benchmark's chains.

`aws cloudtrail validate-logs` needs DescribeTrails and ListPublicKeys, which no S3
emulator serves. This driver runs the very same code path (`CloudTrailValidateLogs._call`
of `awscli.customizations.cloudtrail.validation`: listing, digest fetch, signature check
with `rsa`, the chain walk, and every log download + inflate + SHA-256) with:

- `--s3-bucket` semantics (bucket given, so no DescribeTrails), one trail ARN per
  (account, region) chain, the CLI region set to the delivering region;
- the benchmark's signing key as the public key provider (a stand-in for the
  CloudTrail client whose `list_public_keys` returns the key list file; `Value` stays
  base64, exactly as the CLI's client returns it);
- S3 clients pointed at the benchmark endpoint with path-style addressing and the
  static credentials from the environment. GetBucketLocation is answered locally
  (the chain's region, as the CLI would use for a bucket in its own region): every
  benchmark bucket lives on the one local server, so a real lookup would only add one
  request per bucket and chain.

Everything else is the CLI's code, unchanged. Prints one JSON object.

Usage:
  awscli_validate.py --endpoint URL --info info.json --public-keys keys.json
                     [--start ISO] [--end ISO] [--max-chains N]
"""

import argparse
import contextlib
import io
import json
import sys
import time

import awscli  # noqa: F401  (first: awscli 1.46 vendors botocore and aliases the top-level import)
import botocore.config
import botocore.session
from awscli.customizations.cloudtrail import validation
from awscli.customizations.cloudtrail.validation import (
    CloudTrailValidateLogs,
    S3ClientProvider,
    normalize_date,
    parse_date,
)


class StaticPublicKeys:
    """Stands in for the CloudTrail client: ListPublicKeys from a file."""

    def __init__(self, path):
        with open(path) as handle:
            self._keys = json.load(handle)["PublicKeyList"]
        self.calls = 0

    def list_public_keys(self, StartTime=None, EndTime=None):  # noqa: N803 (boto3 names)
        self.calls += 1
        return {"PublicKeyList": list(self._keys)}


class EndpointS3ClientProvider(S3ClientProvider):
    """The CLI's provider, with the endpoint, path-style addressing and a pool
    as large as the CLI's own default (10)."""

    def __init__(self, session, region, endpoint):
        super().__init__(session, region)
        self._endpoint = endpoint

    def _get_bucket_region(self, bucket_name):
        return self._get_bucket_location_region

    def _create_client(self, region_name):
        if region_name not in self._client_cache:
            self._client_cache[region_name] = self._session.create_client(
                "s3",
                region_name=region_name,
                endpoint_url=self._endpoint,
                config=botocore.config.Config(s3={"addressing_style": "path"}),
            )
        return self._client_cache[region_name]


def validate_chain(session, endpoint, keys, chain, trail_name, home_region, start, end, verbose):
    command = CloudTrailValidateLogs(session)
    command.trail_arn = f"arn:aws:cloudtrail:{home_region}:{chain['account_id']}:trail/{trail_name}"
    command.is_verbose = verbose
    command.start_time = start
    command.end_time = end
    command.s3_bucket = chain["bucket"]
    command.s3_prefix = None
    command.account_id = chain["account_id"]
    command._source_region = chain["region"]
    command.s3_client_provider = EndpointS3ClientProvider(session, chain["region"], endpoint)
    command.cloudtrail_client = keys
    command.organization_client = None
    output = io.StringIO()
    with contextlib.redirect_stdout(output):
        command._call()
    return {
        "account_id": chain["account_id"],
        "region": chain["region"],
        "digests_valid": command._valid_digests,
        "digests_invalid": command._invalid_digests,
        "backfill_valid": command._valid_backfill_digests,
        "backfill_invalid": command._invalid_backfill_digests,
        "logs_valid": command._valid_logs,
        "logs_invalid": command._invalid_logs,
        "summary": output.getvalue().strip().splitlines()[-4:],
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--endpoint", required=True)
    parser.add_argument("--info", required=True, help="output of `trailbench info`")
    parser.add_argument("--public-keys", required=True)
    parser.add_argument("--start", help="default: the data set's first digest start")
    parser.add_argument("--end", help="default: now")
    parser.add_argument("--max-chains", type=int, default=0, help="validate only the first N chains")
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args()

    with open(args.info) as handle:
        info = json.load(handle)
    start = normalize_date(parse_date(args.start or info["first_digest_start"]))
    end = normalize_date(parse_date(args.end)) if args.end else normalize_date(validation.get_current_datetime())
    chains = info["chains"][: args.max_chains] if args.max_chains else info["chains"]
    session = botocore.session.get_session()
    keys = StaticPublicKeys(args.public_keys)
    results = []
    started = time.monotonic()
    for chain in chains:
        results.append(
            validate_chain(session, args.endpoint, keys, chain, info["trail_name"], info["home_region"], start, end, args.verbose)
        )
    seconds = time.monotonic() - started
    totals = {
        name: sum(result[name] for result in results)
        for name in ("digests_valid", "digests_invalid", "backfill_valid", "backfill_invalid", "logs_valid", "logs_invalid")
    }
    digests = totals["digests_valid"] + totals["digests_invalid"] + totals["backfill_valid"] + totals["backfill_invalid"]
    logs = totals["logs_valid"] + totals["logs_invalid"]
    print(
        json.dumps(
            {
                "tool": "awscli validation module",
                "awscli_version": __import__("awscli").__version__,
                "chains": len(results),
                "seconds": seconds,
                "digests": digests,
                "log_files": logs,
                "digests_per_second": digests / seconds if seconds else 0,
                "log_files_per_second": logs / seconds if seconds else 0,
                **totals,
                "invalid_chains": [r for r in results if r["digests_invalid"] or r["logs_invalid"]],
            }
        )
    )
    return 1 if totals["digests_invalid"] or totals["logs_invalid"] else 0


if __name__ == "__main__":
    sys.exit(main())
