"""Check the installed dependencies for known vulnerabilities with pip-audit.

Usage: ``python scripts/audit.py REQUIREMENTS`` (pinned, e.g. ``pip freeze``),
run with a Python that has pip-audit. Exits 1 when a dependency has a known
vulnerability. A package pip-audit could not look up (its vulnerability
service unreachable, or a package not on PyPI) is listed as a warning; with
``AUDIT_STRICT=1`` that fails too.
"""

from __future__ import annotations

import json
import os
import subprocess  # nosec B404 - runs pip-audit, a fixed command
import sys


def main(requirements: str) -> int:
    command = [
        sys.executable,
        "-m",
        "pip_audit",
        "--requirement",
        requirements,
        "--no-deps",
        "--disable-pip",
        "--progress-spinner",
        "off",
        "--format",
        "json",
    ]
    done = subprocess.run(command, capture_output=True, text=True, check=False)  # noqa: S603  # nosec B603
    try:
        report = json.loads(done.stdout)
    except json.JSONDecodeError:
        sys.stderr.write(done.stderr)
        print("pip-audit failed before it could report", file=sys.stderr)
        return 2
    dependencies = report.get("dependencies", [])
    vulnerable = [d for d in dependencies if d.get("vulns")]
    skipped = [d for d in dependencies if d.get("skip_reason")]
    audited = len(dependencies) - len(skipped)
    for dependency in vulnerable:
        for vuln in dependency["vulns"]:
            fixed = ", ".join(vuln.get("fix_versions") or []) or "no fixed version yet"
            print(f"VULNERABLE {dependency['name']} {dependency['version']}: {vuln['id']} (fixed in {fixed})")
    if skipped:
        print(f"WARNING: {len(skipped)} of {len(dependencies)} packages could not be audited:")
        for dependency in skipped:
            print(f"  {dependency['name']} {dependency.get('version', '')}: {dependency['skip_reason']}")
        if audited == 0:
            print(
                "WARNING: the vulnerability service did not answer for any package "
                "(no network, or PyPI's JSON API is blocked): this run proves nothing; "
                "run `make audit` where PyPI is reachable."
            )
    print(f"pip-audit: {audited} packages audited, {len(vulnerable)} with known vulnerabilities")
    if vulnerable:
        return 1
    if skipped and os.environ.get("AUDIT_STRICT") == "1":
        return 1
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit(__doc__)
    raise SystemExit(main(sys.argv[1]))
