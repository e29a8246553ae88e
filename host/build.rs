//! Links the `rill` binary with the functions its start-up runs placed together, so that an idle
//! `rill serve` maps few pages of its own code (`xtask/src/startup_order.rs` says why and makes
//! `startup-order.txt`). Only where rustc links with lld, which reads an ordering file: release
//! builds for x86-64 Linux (rustc's default linker there since 1.90). Other targets link as before,
//! and so does any build with `RILL_NO_STARTUP_ORDER` set (e.g. one that picks another linker).

use std::path::Path;

fn main() {
    println!("cargo:rerun-if-changed=startup-order.txt");
    println!("cargo:rerun-if-env-changed=RILL_NO_STARTUP_ORDER");
    let var = |name: &str| std::env::var(name).unwrap_or_default();
    let order = Path::new(&var("CARGO_MANIFEST_DIR")).join("startup-order.txt");
    let applies = var("TARGET") == "x86_64-unknown-linux-gnu"
        && var("PROFILE") == "release"
        && std::env::var_os("RILL_NO_STARTUP_ORDER").is_none()
        && order.exists();
    if applies {
        println!("cargo:rustc-link-arg-bin=rill=-Wl,--symbol-ordering-file={}", order.display());
        // Functions the file names that this build does not have (renamed since it was made).
        println!("cargo:rustc-link-arg-bin=rill=-Wl,--no-warn-symbol-ordering");
    }
}
