#!/usr/bin/env bash
# Boots the firmware in QEMU's model of the MPS2 AN386 board, its uplink UART (the first serial
# port) connected to a gateway's device listener over TCP. QEMU does not reconnect a dropped TCP
# serial port by default: this asks it to, every second. With `pty` for the gateway, the uplink
# UART is a pseudo-terminal instead (QEMU prints its path), for a gateway's `[[devices.serial]]`
# port, as if the board were on a serial cable. The console UART (the second) goes to CONSOLE, a
# QEMU chardev (default stdio; `file:PATH` for a file).
#
# The board keeps its boot counter in block RAM at 0x01000000, which QEMU zeroes at every start:
# BOOT_COUNTER stands in for the value a real board would keep in flash, and the firmware's boot
# id is one more. The default is random: a boot id must not repeat, or the gateway takes the new
# boot's first batches for repeats. (A reset inside QEMU, rather than a new QEMU, loads the same
# counter again: quit QEMU and start it anew instead.)
#
# The flash backlog lives in the board's PSRAM (QEMU's machine RAM, see src/board.rs): with FLASH
# (a file path), that memory is the file, shared, so what the firmware wrote there outlives QEMU,
# as a chip's flash outlives a power cut (`kill -9` of QEMU is the power cut). A missing file is
# made erased (all 0xFF), as a new chip comes. Without FLASH the backlog is plain RAM.
#
# usage: qemu.sh FIRMWARE GATEWAY_HOST:PORT|pty [CONSOLE] [BOOT_COUNTER] [FLASH]
# (`cargo run --release -- HOST:PORT` here runs it on the built firmware.)
set -euo pipefail
if (( $# < 2 )); then
    sed -n 's/^# usage: //p' "$0" >&2
    exit 2
fi
firmware=$1
gateway=$2
console=${3:-stdio}
boot_counter=${4:-$(od -An -N4 -tu4 /dev/urandom | tr -d ' ')}
flash=${5:-}

# The board's PSRAM is 16 MiB: a file backing it must be as large.
machine=(-M mps2-an386)
if [[ -n ${flash} ]]; then
    if [[ ! -e ${flash} ]]; then
        head -c 16777216 /dev/zero | tr '\0' '\377' >"${flash}"
    fi
    machine=(-M mps2-an386,memory-backend=flash
        -object "memory-backend-file,id=flash,size=16M,mem-path=${flash},share=on")
fi

if [[ ${gateway} == pty ]]; then
    uplink=pty
else
    # QEMU 9.2 renamed the option (seconds) to reconnect-ms.
    read -r major minor < <(qemu-system-arm --version | sed -n 's/.*version \([0-9]*\)\.\([0-9]*\).*/\1 \2/p')
    if (( major > 9 || (major == 9 && minor >= 2) )); then
        uplink="tcp:${gateway},nodelay=on,reconnect-ms=1000"
    else
        uplink="tcp:${gateway},nodelay=on,reconnect=1"
    fi
fi

exec qemu-system-arm "${machine[@]}" -nographic -monitor none \
    -serial "${uplink}" \
    -serial "${console}" \
    -kernel "${firmware}" \
    -device "loader,addr=0x01000000,data=${boot_counter},data-len=4"
