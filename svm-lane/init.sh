#!/bin/busybox sh
# PID 1 of the lane's VM. Loads the modules (kvm_amd gives /dev/kvm), mounts the host's root over
# virtio-9p, runs the job's command chrooted there, records its status and powers off.
# The job directory (a second 9p export) is how this VM talks to run.sh: cmd.sh in; stdout, stderr,
# status, heartbeat, times and dmesg out.
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
console() { echo "svm-lane init: $*" > /dev/ttyS0; }
uptime_s() { cut -d' ' -f1 /proc/uptime; }
# cmdline NAME: the value of svmlane.NAME= on the kernel command line
cmdline() { for w in $(cat /proc/cmdline); do case "$w" in svmlane.$1=*) echo "${w#*=}"; return;; esac; done; }

kernel_up=$(uptime_s)
for m in $(cat /modules.list); do
  name=$(basename "$m" .ko)
  params=""
  [ "$name" = kvm_amd ] && params=$(cmdline kvm_amd | tr , ' ')
  insmod "/lib/modules/$m" $params 2> /dev/ttyS0 || console "insmod $name failed"
done
# Keeps KVM's "vCPU without local APIC" static key on, so that the kernel never patches its code
# (and IPIs every CPU) again: see kvm-hold.c.
kvm-hold &
mkdir -p /job /host
mount -t 9p -o trans=virtio,version=9p2000.L,msize=512000,cache=none job /job || { console "cannot mount the job directory"; poweroff -f; }
# cache=loose: the host's files are read once and kept; the lane never changes them from outside
# while the VM runs.
mount -t 9p -o trans=virtio,version=9p2000.L,msize=512000,cache=loose hostroot /host || { console "cannot mount the host root"; echo 255 > /job/status; poweroff -f; }
mount -t proc proc /host/proc
mount -t sysfs sys /host/sys
mount -t devtmpfs dev /host/dev
mkdir -p /host/dev/pts /host/dev/shm 2>/dev/null
mount -t devpts devpts /host/dev/pts
mount -t tmpfs tmpfs /host/dev/shm
# The host's /tmp and /run belong to the host's running processes: the VM gets fresh ones. A job
# directory inside them (a CI's clean clone under /tmp, say) stays the host's: it is kept aside
# and bound back at the same path.
cwd=$(cat /job/cwd 2>/dev/null)
case $cwd in
  /tmp/*|/run/*) mkdir -p /keep && mount -o bind "/host$cwd" /keep || { console "cannot keep $cwd"; cwd=; } ;;
  *) cwd= ;;
esac
mount -t tmpfs -o mode=1777 tmpfs /host/tmp
mount -t tmpfs tmpfs /host/run
if [ -n "$cwd" ]; then
  mkdir -p "/host$cwd" && mount -o bind /keep "/host$cwd" || console "cannot bind $cwd back"
fi
ifconfig lo 127.0.0.1 netmask 255.0.0.0 up
hostname svm-lane
{
  echo "kernel $(uname -r), $(grep -c ^processor /proc/cpuinfo) CPUs, $(grep -c ' svm' /proc/cpuinfo) with svm"
  ls -l /dev/kvm
  for p in /sys/module/kvm_amd/parameters/*; do echo "kvm_amd.$(basename "$p")=$(cat "$p")"; done
} > /job/vminfo 2>&1
[ "$(cmdline kallsyms)" = 1 ] && cat /proc/kallsyms > /job/kallsyms
cp /job/cmd.sh /host/tmp/.svm-lane-cmd.sh
echo "$kernel_up $(uptime_s)" > /job/boot-times
# The heartbeat tells run.sh that this kernel still schedules processes: a VM whose heartbeat stops
# is wedged, not slow.
# Written to a new file and renamed, so run.sh never reads it half-written.
( while :; do uptime_s > /job/heartbeat.new && mv /job/heartbeat.new /job/heartbeat; sleep 2; done ) &
timeout=$(cmdline timeout)
chroot /host /usr/bin/timeout -k 10 "${timeout:-600}" /bin/bash /tmp/.svm-lane-cmd.sh < /dev/null > /job/stdout 2> /job/stderr
status=$?
uptime_s > /job/end-time
echo "$status" > /job/status
dmesg > /job/dmesg
sync
poweroff -f
