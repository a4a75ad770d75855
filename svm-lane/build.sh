#!/usr/bin/env bash
# Prepares what the emulated-SVM lane boots: Debian's kernel (downloaded and unpacked, never installed
# on this machine) and a small initramfs (BusyBox, the modules for 9p and kvm_amd, init.sh as /init).
#
# Cached in $TSKVM_SVM_CACHE (default /var/cache/tskvm-svm-lane). Rebuilt when an input changes: this
# script, init.sh, kvm-hold.c, BusyBox, or the kernel package that linux-image-amd64 points at. Prints the cache
# directory's artefacts on stdout as KEY=PATH lines for run.sh.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cache=${TSKVM_SVM_CACHE:-/var/cache/tskvm-svm-lane}
mkdir -p "$cache/dl"
log() { echo "svm-lane build: $*" >&2; }

# The packages this needs are in apt-packages.txt too; installing them here keeps the lane usable
# from a checkout whose packages were not set up by .ci/run.
missing=()
command -v qemu-system-x86_64 >/dev/null || missing+=(qemu-system-x86)
command -v cpio >/dev/null || missing+=(cpio)
command -v depmod >/dev/null || missing+=(kmod)
[[ -x /bin/busybox ]] && ! ldd /bin/busybox >/dev/null 2>&1 || missing+=(busybox-static)
if ((${#missing[@]})); then
  log "installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
fi

# linux-image-amd64 is a metapackage; the real one (linux-image-6.1.0-NN-amd64) is its dependency.
kernel_package() { apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-[0-9]/ { print $2; exit }'; }
kpkg=$(kernel_package)
if [[ -z $kpkg ]]; then apt-get update -qq; kpkg=$(kernel_package); fi
[[ -n $kpkg ]] || { log "apt knows no linux-image-amd64"; exit 1; }
kver=${kpkg#linux-image-}
deb=$(ls "$cache/dl/${kpkg}"_*.deb 2>/dev/null | head -n 1 || true)
if [[ -z $deb ]]; then
  log "downloading $kpkg"
  (cd "$cache/dl" && apt-get download -qq "$kpkg" >&2)
  deb=$(ls "$cache/dl/${kpkg}"_*.deb | head -n 1)
fi
kroot=$cache/kroot-$kver
if [[ ! -f $kroot/boot/vmlinuz-$kver ]]; then
  rm -rf "$kroot.tmp"; mkdir -p "$kroot.tmp"
  dpkg-deb -x "$deb" "$kroot.tmp"
  depmod -b "$kroot.tmp" "$kver"
  rm -rf "$kroot"; mv "$kroot.tmp" "$kroot"
fi

stamp=$( { sha256sum "$here/build.sh" "$here/init.sh" "$here/kvm-hold.c" /bin/busybox; echo "$deb"; } | sha256sum | cut -c1-16)
out=$cache/boot-$stamp
if [[ ! -f $out/initramfs.cpio.gz ]]; then
  log "building the initramfs for kernel $kver"
  rm -rf "$out.tmp"; mkdir -p "$out.tmp/root"/{bin,proc,sys,dev,tmp,lib/modules}
  root=$out.tmp/root
  cp /bin/busybox "$root/bin/busybox"
  # virtio_pci + 9p: the host's filesystem; kvm_amd (pulls in kvm): /dev/kvm. Loaded by init.sh in
  # this order, dependencies first.
  for m in virtio_pci 9pnet_virtio 9p kvm_amd; do
    modprobe -d "$kroot" -S "$kver" --show-depends "$m" | awk '$1 == "insmod" { print $2 }'
  done | awk '!seen[$0]++' | while read -r ko; do
    rel=${ko#"$kroot/lib/modules/$kver/"}
    mkdir -p "$root/lib/modules/$(dirname "$rel")"
    # Stripping drops the appended signature: verifying it takes seconds under the emulator, and an
    # unsigned module only marks the kernel tainted.
    strip --strip-debug -o "$root/lib/modules/$rel" "$ko"
    echo "$rel" >> "$root/modules.list"
  done
  install -m 755 "$here/init.sh" "$root/init"
  gcc -O2 -static -o "$root/bin/kvm-hold" "$here/kvm-hold.c"
  (cd "$root" && find . -print0 | cpio --null -o -H newc --quiet | gzip -1) > "$out.tmp/initramfs.cpio.gz"
  # The uncompressed kernel boots through its PVH entry point: the bzImage's own xz decompressor
  # costs seconds when every instruction is emulated. Fall back to the bzImage without python3.
  cp "$kroot/boot/vmlinuz-$kver" "$out.tmp/vmlinuz"
  if command -v python3 >/dev/null; then
    python3 - "$out.tmp/vmlinuz" "$out.tmp/vmlinux" <<'PY' || rm -f "$out.tmp/vmlinux"
import lzma, sys
data = open(sys.argv[1], 'rb').read()
at = data.find(b'\xfd7zXZ\x00')
if at < 0: sys.exit(1)
open(sys.argv[2], 'wb').write(lzma.LZMADecompressor(format=lzma.FORMAT_XZ).decompress(data[at:]))
PY
  fi
  rm -rf "$out.tmp/root" "$out"; mv "$out.tmp" "$out"
  # Older builds of other inputs are of no further use.
  find "$cache" -maxdepth 1 -name 'boot-*' ! -name "boot-$stamp" -exec rm -rf {} +
fi
kernel=$out/vmlinux; [[ -f $kernel ]] || kernel=$out/vmlinuz
echo "KERNEL=$kernel"
echo "INITRD=$out/initramfs.cpio.gz"
echo "KVER=$kver"
