#!/usr/bin/env bash
# Boots the firmware in QEMU's model of the MPS2 AN386 board, its uplink UART (the first serial
# port) connected to a gateway's device listener over TCP. QEMU does not reconnect a dropped TCP
# serial port by default: this asks it to, every second. The console UART (the second) goes to
# CONSOLE, a QEMU chardev (default stdio; `file:PATH` for a file).
#
# The board keeps its boot counter in block RAM at 0x01000000, which QEMU zeroes at every start:
# BOOT_COUNTER stands in for the value a real board would keep in flash (default: the seconds
# since the epoch, which do not repeat), and the firmware's boot id is one more.
#
# usage: qemu.sh FIRMWARE GATEWAY_HOST:PORT [CONSOLE] [BOOT_COUNTER]
# (`cargo run --release -- HOST:PORT` here runs it on the built firmware.)
set -euo pipefail
if (( $# < 2 )); then
    sed -n 's/^# usage: //p' "$0" >&2
    exit 2
fi
firmware=$1
gateway=$2
console=${3:-stdio}
boot_counter=${4:-$(( $(date +%s) & 0xffffffff ))}

# QEMU 9.2 renamed the option (seconds) to reconnect-ms.
read -r major minor < <(qemu-system-arm --version | sed -n 's/.*version \([0-9]*\)\.\([0-9]*\).*/\1 \2/p')
if (( major > 9 || (major == 9 && minor >= 2) )); then
    reconnect=reconnect-ms=1000
else
    reconnect=reconnect=1
fi

exec qemu-system-arm -M mps2-an386 -nographic -monitor none \
    -serial "tcp:${gateway},${reconnect}" \
    -serial "${console}" \
    -kernel "${firmware}" \
    -device "loader,addr=0x01000000,data=${boot_counter},data-len=4"
