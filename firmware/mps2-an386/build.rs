//! Puts the linker scripts where the linker finds them (cortex-m-rt's `link.x` includes
//! `memory.x` and `device.x`).

use std::path::PathBuf;

fn main() {
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    for script in ["memory.x", "device.x"] {
        std::fs::copy(script, out.join(script)).unwrap_or_else(|e| panic!("copying {script}: {e}"));
        println!("cargo:rerun-if-changed={script}");
    }
    println!("cargo:rustc-link-search={}", out.display());
}
