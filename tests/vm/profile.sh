# SPDX-License-Identifier: GPL-2.0
# Profile of the sample's data path (release kernel): perf samples vCPU 1,
# where the benchmark driver and the device's worker both run (cpu-clock:
# TCG has no hardware counters), while frames move through an instance over
# a type1 container or iommufd. PROFILE_SIZE sets the frame size (default
# 1500), PROFILE_IOMMU the back end (type1, the default, or iommufd).
#   MODDIR=... scripts/vm --flavour release --verbose tests/vm/profile.sh
. "$VHOST_MDEV_TOP/tests/vm/lib.sh"
load_kernel_modules; load_ours
uuid=$(vhost-mdev create --parent vhost_mdev_net --type "$TYPE")
size=${PROFILE_SIZE:-1500}
iommu=()
case ${PROFILE_IOMMU:-type1} in
type1) ;;
iommufd) iommu=(--iommufd) ;;
*) echo "FAIL: PROFILE_IOMMU=$PROFILE_IOMMU (type1 or iommufd)"; exit 1 ;;
esac
echo 2 >/sys/devices/virtual/workqueue/cpumask
perf record -q -C 1 -g -e cpu-clock -o /tmp/perf.data -- \
	taskset -c 1 vhost-mdev bench "$uuid" --size "$size" --seconds 5 --busy-poll "${iommu[@]}" 2>/dev/null
perf report -i /tmp/perf.data --stdio --no-children --sort sym --percent-limit 0.8 -g none 2>/dev/null |
	grep -v '^$' | head -n 60 | sed 's/^/PROFILE /'
vhost-mdev remove "$uuid"
