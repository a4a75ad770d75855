#!/usr/bin/env bash
# Runs one command inside the lane's VM: QEMU emulating (TCG) an AMD CPU with SVM and nested paging,
# where Debian's kernel loads kvm_amd, so /dev/kvm is a hardware-style KVM. The host's root is the
# VM's root (over virtio-9p), so the command sees this checkout at the same path.
#
#   svm-lane/run.sh [--timeout S] [--smp N] [--mem MiB] [--kvm-amd k=v,...] [--env K=V]... [--keep]
#                   [--kallsyms] [--cwd DIR] -- COMMAND [ARGS...]
#
# Streams the command's stdout and stderr and exits with its status; 124 when --timeout ended it.
# Every run ends with a verdict: when the VM stops making progress (its heartbeat goes stale for
# --stall seconds) or outlives --timeout by the boot margin, the CPUs' registers are printed from
# QEMU's monitor, the VM is killed and the exit status is 255.
set -uo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
usage() { sed -n '6,7p' "${BASH_SOURCE[0]}" | sed 's/^# *//' >&2; exit 2; }

timeout=600 stall=${TSKVM_SVM_STALL:-120} smp=${TSKVM_SVM_SMP:-2} mem=${TSKVM_SVM_MEM:-4096}
kvm_amd=${TSKVM_SVM_KVM_AMD:-} cwd=$PWD keep=0 kallsyms=0 envs=()
while (($#)); do
  case $1 in
    --timeout) timeout=$2; shift 2;;
    --stall) stall=$2; shift 2;;
    --smp) smp=$2; shift 2;;
    --mem) mem=$2; shift 2;;
    --kvm-amd) kvm_amd=$2; shift 2;;
    --env) envs+=("$2"); shift 2;;
    --cwd) cwd=$2; shift 2;;
    --keep) keep=1; shift;;
    --kallsyms) kallsyms=1; keep=1; shift;;
    --) shift; break;;
    *) usage;;
  esac
done
(($#)) || usage
cwd=$(cd "$cwd" && pwd) || exit 2

eval "$("$here/build.sh")" || { echo "svm-lane: build.sh failed" >&2; exit 255; }
cache=${TSKVM_SVM_CACHE:-/var/cache/tskvm-svm-lane}
mkdir -p "$cache/jobs"
job=$(mktemp -d "$cache/jobs/job.XXXXXX")
qemu_pid=
cleanup() {
  [[ -n $qemu_pid ]] && kill -9 "$qemu_pid" 2>/dev/null
  if ((keep)); then echo "svm-lane: job directory kept: $job" >&2; else rm -rf "$job"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# The command runs with this environment, not the host's whole one.
{
  for v in PATH HOME LANG LC_ALL TERM USER CI NODE_OPTIONS $(compgen -e | grep -E '^(TSKVM_|TAP_|npm_config_)' || true); do
    [[ -n ${!v+set} ]] && printf 'export %s=%q\n' "$v" "${!v}"
  done
  for e in ${envs[@]+"${envs[@]}"}; do printf 'export %q\n' "$e"; done
  printf 'cd %q || exit 125\n' "$cwd"
  printf 'exec'; printf ' %q' "$@"; printf '\n'
} > "$job/cmd.sh"
: > "$job/stdout"; : > "$job/stderr"
printf '%s\n' "$cwd" > "$job/cwd" # init.sh keeps it visible when it lies under /tmp or /run

# mitigations=off and tsc=reliable: fewer emulated instructions, and no clocksource watchdog that
# would judge the emulated TSC unstable. panic=-1: a panicking kernel reboots, and -no-reboot turns
# that into QEMU exiting, which the loop below reports.
append="console=ttyS0 quiet loglevel=4 panic=-1 mitigations=off tsc=reliable svmlane.timeout=$timeout"
[[ -n $kvm_amd ]] && append+=" svmlane.kvm_amd=$kvm_amd"
((kallsyms)) && append+=" svmlane.kallsyms=1"
qemu=(qemu-system-x86_64 -nodefaults -no-user-config -display none -no-reboot
  -accel tcg,thread=multi -cpu EPYC,+svm,+npt -smp "$smp" -m "$mem"
  -kernel "$KERNEL" -initrd "$INITRD" -append "$append"
  -serial file:"$job/console.log" -monitor unix:"$job/monitor.sock",server,nowait
  -fsdev local,id=hostroot,path=/,security_model=none,multidevs=remap
  -device virtio-9p-pci,fsdev=hostroot,mount_tag=hostroot
  -fsdev local,id=job,path="$job",security_model=none
  -device virtio-9p-pci,fsdev=job,mount_tag=job)

started=$(date +%s)
"${qemu[@]}" 2> "$job/qemu.stderr" &
qemu_pid=$!
tail -n +1 -s 0.5 -f --pid=$qemu_pid "$job/stdout" &
tail_out=$!
tail -n +1 -s 0.5 -f --pid=$qemu_pid "$job/stderr" >&2 &
tail_err=$!

# Boot takes seconds; the command's own timeout is enforced inside. The margin covers both, so
# this host-side limit only fires when the VM itself no longer gets anything done.
margin=180 verdict=
while kill -0 $qemu_pid 2>/dev/null; do
  sleep 2
  now=$(date +%s)
  if [[ -f $job/heartbeat ]]; then
    beat=$(stat -c %Y "$job/heartbeat")
    if ((now - beat > stall)); then
      verdict="wedged: the VM's heartbeat stopped $((now - beat)) s ago (at guest uptime $(cat "$job/heartbeat") s)"
    elif ((now - started > timeout + margin)); then
      verdict="the VM outlived the command's timeout ($timeout s) by $margin s"
    fi
  elif ((now - started > margin)); then
    verdict="the VM did not start the command within $margin s"
  fi
  if [[ -n $verdict ]]; then
    echo "svm-lane: $verdict; the CPUs at that moment:" >&2
    node "$here/monitor.mjs" "$job/monitor.sock" 'info cpus' 'info registers -a' >&2
    kill -9 $qemu_pid 2>/dev/null
    break
  fi
done
wait $qemu_pid 2>/dev/null; qemu_status=$?
qemu_pid=
wait $tail_out $tail_err 2>/dev/null

elapsed=$(($(date +%s) - started))
if [[ -z $verdict && -s $job/status ]]; then
  read -r up cmd_start < "$job/boot-times"
  echo "svm-lane: $(head -n 1 "$job/vminfo"); command started at ${cmd_start} s of guest uptime, VM done in ${elapsed} s, status $(cat "$job/status")" >&2
  exit "$(cat "$job/status")"
fi
[[ -n $verdict ]] || echo "svm-lane: the VM ended without the command's status (qemu exit $qemu_status)" >&2
echo "svm-lane: last console lines:" >&2
tail -n 40 "$job/console.log" >&2
grep -v -e '^\s*$' -e "TCG doesn't support requested feature" "$job/qemu.stderr" >&2
exit 255
