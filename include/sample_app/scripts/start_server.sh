#!/bin/bash
# ApplicationStart
set -euo pipefail
systemctl start webapp
