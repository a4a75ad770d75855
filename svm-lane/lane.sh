#!/usr/bin/env bash
# The hardware-KVM lane (npm run test:svm): builds everything on this machine, then runs the test
# files of svm-lane/tests.txt (or those given) inside one VM whose KVM is kvm_amd on an emulated
# AMD CPU (run.sh). Exits 0 when every file passed.
#
#   svm-lane/lane.sh [--timeout S] [--file-timeout S] [FILE...]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
timeout=${TSKVM_SVM_TIMEOUT:-2400} file_timeout=${TSKVM_SVM_FILE_TIMEOUT:-900}
while (($#)); do
  case $1 in
    --timeout) timeout=$2; shift 2;;
    --file-timeout) file_timeout=$2; shift 2;;
    *) break;;
  esac
done
files=("$@")
((${#files[@]})) || mapfile -t files < <(sed -e 's/#.*//' -e '/^[[:space:]]*$/d' svm-lane/tests.txt)

echo "svm-lane: building on the host" >&2
npm run -s build
npm run -s build:tests
make -s -C test/guests
make -s -C guest/examples
# Inside, KVM exists: its tests must run, whatever this machine's environment says.
unset TSKVM_SKIP_KVM
# The reset test's 10 000 requests take 12 minutes emulated; a quarter of them checks the same
# hardware path (measured times in svm-lane/README.md).
export TSKVM_RESET_REQUESTS=${TSKVM_RESET_REQUESTS:-2500}
# test/fs-race.test.ts is not in the set (the race is the host's, whatever the KVM); run by name there,
# a tenth of its attempts.
export TSKVM_FSRACE_ATTEMPTS=${TSKVM_FSRACE_ATTEMPTS:-10000}
exec svm-lane/run.sh --timeout "$timeout" -- node svm-lane/run-tests.mjs --file-timeout "$file_timeout" "${files[@]}"
