# SPDX-License-Identifier: GPL-2.0
# The main job: load the modules, create an instance, move packets.
. "$VHOST_MDEV_TOP/tests/vm/lib.sh"
set -e
load_kernel_modules
load_ours
echo "INFO: modules loaded: $(lsmod | awk 'NR > 1 { print $1 }' | tr '\n' ' ')"
vhost-mdev list
uuid=$(vhost-mdev create --parent vhost_mdev_net --type "$TYPE")
echo "INFO: created instance $uuid"
vhost-mdev info "$uuid"
t "ping 1000 frames through $uuid (container)" vhost-mdev ping "$uuid" -n 1000
t "ping 1000 frames through $uuid (iommufd)" vhost-mdev ping "$uuid" -n 1000 --iommufd
echo "INFO: a 3-second benchmark (1500-byte frames, debug kernel under TCG: slow; see make bench)"
t "bench $uuid" vhost-mdev bench "$uuid" --seconds 3 --size 1500
vhost-mdev bench "$uuid" --seconds 2 --size 64
vhost-mdev stats "$uuid"
vhost-mdev remove "$uuid"
unload_ours
