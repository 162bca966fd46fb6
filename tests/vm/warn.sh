# SPDX-License-Identifier: GPL-2.0
# Harness self-test: a guest whose kernel WARNs. scripts/vm must flag it.
modprobe -d "$MODROOT" lkdtm
echo WARNING >/sys/kernel/debug/provoke-crash/DIRECT
echo "INFO: WARN provoked"
