#!/bin/bash
# AfterInstall: virtualenv and service unit for the new bundle.
set -euo pipefail
python3.11 -m venv /opt/webapp/.venv
/opt/webapp/.venv/bin/pip install -r /opt/webapp/requirements.txt
cp /opt/webapp/scripts/webapp.service /etc/systemd/system/webapp.service
systemctl daemon-reload
