#!/bin/bash
# ApplicationStop: stop the running server, if any.
systemctl stop webapp || true
