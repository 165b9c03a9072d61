#!/usr/bin/env bash
# Make the golden fixtures under tests/fixtures/golden/: outputs of torchvision, timm and
# akamaster/pytorch_resnet_cifar10 on seeded weights (tests/golden.py), for tests/test_golden.py.
#
#   bash scripts/make-golden-fixtures.sh PATH/TO/akamaster/resnet.py
#
# resnet.py is akamaster/pytorch_resnet_cifar10's at commit d5489e8 (the script checks its git
# blob hash); get it with `git clone https://github.com/akamaster/pytorch_resnet_cifar10` and
# keep it outside this repository: its code is not ours to commit.
# The Python is $REFVENV (default /work/refvenv) with torch, torchvision and timm; the project's
# own venv has neither torchvision nor timm, and CI never runs this script.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
venv="${REFVENV:-/work/refvenv}"
exec "$venv/bin/python" "$here/golden_fixtures.py" "${1:?usage: $0 PATH/TO/akamaster/resnet.py}" \
    --out "$here/../tests/fixtures/golden"
