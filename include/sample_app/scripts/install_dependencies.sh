#!/bin/bash
# BeforeInstall: runtime packages the server needs.
set -euo pipefail
dnf install -y python3.11
