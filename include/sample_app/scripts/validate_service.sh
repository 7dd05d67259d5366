#!/bin/bash
# ValidateService: the instance only takes traffic once /health answers.
set -euo pipefail
for attempt in $(seq 1 10); do
  curl -fsS http://127.0.0.1:8080/health && exit 0
  sleep 3
done
exit 1
