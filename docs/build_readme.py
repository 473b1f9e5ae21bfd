#!/usr/bin/env python3
"""Assemble README.md from docs/*.md.

Why: each topic is edited in its own file under docs/, while GitHub and a
newcomer read one README. Links relative to docs/ are rewritten for the
repository root. Run it after editing a doc: `python3 docs/build_readme.py`.
"""

import pathlib

DOCS = pathlib.Path(__file__).resolve().parent
SECTIONS = ["lab", "collection", "client", "security", "flow-control", "drill", "benchmarks", "vm-lab"]
CONTENTS = """## Contents

- [The Docker lab and the test command](#the-docker-lab-and-the-test-command)
- [The Ansible collection](#the-ansible-collection-hamqcluster)
- [Clients: stomp.py and hamq.client](#clients)
- [Security](#security)
- [Producer flow control](#producer-flow-control)
- [The failover drill report](#the-failover-drill-report)
- [Benchmarks](#benchmarks-hamq-next-to-activemq-classic-and-coilmq)
- [The VM lab: NFSv4 and GFS2 on a real kernel](#the-vm-lab-nfsv4-and-gfs2-on-a-real-kernel)
- Deploying to your own hosts, and the troubleshooting runbook: [docs/deploying.md](docs/deploying.md)
- Variables reference (generated): [docs/variables.md](docs/variables.md)
- Internals: [docs/internals.md](docs/internals.md)
"""
LINKS = {
    "](img/": "](docs/img/",
    "](../benchmarks/": "](benchmarks/",
    "[flow-control.md](flow-control.md)": "[Producer flow control](#producer-flow-control)",
}


def build() -> str:
    parts = [(DOCS / "readme-head.md").read_text().rstrip("\n") + "\n", CONTENTS]
    for name in SECTIONS:
        text = (DOCS / f"{name}.md").read_text()
        for old, new in LINKS.items():
            text = text.replace(old, new)
        parts.append(text.rstrip("\n") + "\n")
    return "\n".join(parts)


if __name__ == "__main__":
    (DOCS.parent / "README.md").write_text(build())
