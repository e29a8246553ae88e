//! The device part of the vector table (cortex-m-rt's "device" feature): the AN386 image has 32
//! interrupts; the uplink UART's two have handlers, the rest go to the default handler.

use crate::uart;

#[derive(Clone, Copy)]
#[repr(C)]
pub union Vector {
    handler: unsafe extern "C" fn(),
}

unsafe extern "C" {
    /// cortex-m-rt's default handler (it spins).
    fn DefaultHandler();
}

extern "C" fn uart0_rx() {
    uart::on_uplink_rx();
}

extern "C" fn uart0_tx() {
    uart::on_uplink_tx();
}

#[unsafe(link_section = ".vector_table.interrupts")]
#[unsafe(no_mangle)]
pub static __INTERRUPTS: [Vector; 32] = {
    let mut table = [Vector { handler: DefaultHandler }; 32];
    table[0] = Vector { handler: uart0_rx };
    table[1] = Vector { handler: uart0_tx };
    table
};
