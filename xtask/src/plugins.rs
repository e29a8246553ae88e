//! `cargo xtask plugins`: builds every plugin under `plugins/` for `wasm32-unknown-unknown` and
//! turns each module into a component with `wit-component`, then checks that the component imports
//! nothing but the host's `log` (no WASI: no files, network, clocks or randomness).

use std::path::{Path, PathBuf};
use std::process::Command;

/// The target plugins build for: no WASI, so no capabilities to grant or leak.
pub const PLUGIN_TARGET: &str = "wasm32-unknown-unknown";

/// The only instances a plugin may import: the host's log, and the contract's types-only
/// interface (no functions).
const ALLOWED_IMPORTS: &[&str] = &["rill:plugin/log@0.1.0", "rill:plugin/types@0.1.0"];

/// Builds the plugins; returns the directory holding `<plugin>.wasm` components.
pub fn build(root: &Path) -> Result<PathBuf, String> {
    let plugins = root.join("plugins");
    let target_dir = std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| plugins.join("target"), PathBuf::from);
    super::run(
        "build plugins",
        Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
            .current_dir(&plugins)
            .args(["build", "--release", "--target", PLUGIN_TARGET])
            .env("CARGO_TARGET_DIR", &target_dir),
    )?;
    let out = target_dir.join("plugins");
    std::fs::create_dir_all(&out).map_err(|e| format!("{}: {e}", out.display()))?;
    for name in plugin_crates(&plugins)? {
        let module_path =
            target_dir.join(PLUGIN_TARGET).join("release").join(format!("{}.wasm", name.replace('-', "_")));
        let module = std::fs::read(&module_path).map_err(|e| format!("{}: {e}", module_path.display()))?;
        let component = componentize(&module).map_err(|e| format!("plugin {name}: {e}"))?;
        let imports = check_imports(&component).map_err(|e| format!("plugin {name}: {e}"))?;
        let path = out.join(format!("{name}.wasm"));
        std::fs::write(&path, &component).map_err(|e| format!("{}: {e}", path.display()))?;
        eprintln!("plugin {name}: {} bytes, imports {imports:?} -> {}", component.len(), path.display());
    }
    Ok(out)
}

/// The plugin crates: directories under `plugins/` whose manifest builds a `cdylib`.
fn plugin_crates(plugins: &Path) -> Result<Vec<String>, String> {
    let mut names = Vec::new();
    for entry in std::fs::read_dir(plugins).map_err(|e| format!("{}: {e}", plugins.display()))? {
        let dir = entry.map_err(|e| e.to_string())?.path();
        let Ok(manifest) = std::fs::read_to_string(dir.join("Cargo.toml")) else { continue };
        if manifest.contains("cdylib")
            && let Some(name) = dir.file_name().and_then(|n| n.to_str())
        {
            names.push(name.to_owned());
        }
    }
    names.sort();
    Ok(names)
}

fn componentize(module: &[u8]) -> Result<Vec<u8>, String> {
    wit_component::ComponentEncoder::default()
        .module(module)
        .map_err(|e| format!("not a plugin module (was it built with the SDK?): {e:#}"))?
        .validate(true)
        .encode()
        .map_err(|e| format!("cannot make a component: {e:#}"))
}

/// Refuses a component importing anything beyond [`ALLOWED_IMPORTS`]; returns what it imports.
fn check_imports(component: &[u8]) -> Result<Vec<String>, String> {
    let mut found = Vec::new();
    // Nested components and modules (wit-component's adapters) import from the outer one: only
    // the outermost imports reach the host.
    let mut depth = 0usize;
    for payload in wasmparser::Parser::new(0).parse_all(component) {
        let payload = payload.map_err(|e| e.to_string())?;
        match &payload {
            wasmparser::Payload::ModuleSection { .. } | wasmparser::Payload::ComponentSection { .. } => depth += 1,
            wasmparser::Payload::End(_) => depth = depth.saturating_sub(1),
            _ => {}
        }
        if depth > 0 {
            continue;
        }
        if let wasmparser::Payload::ComponentImportSection(imports) = payload {
            for import in imports {
                let import = import.map_err(|e| e.to_string())?;
                // Type imports carry no capability; instances, functions and modules do.
                if matches!(import.ty, wasmparser::ComponentTypeRef::Type(_)) {
                    continue;
                }
                let name = import.name.name;
                if !ALLOWED_IMPORTS.contains(&name) {
                    return Err(format!("imports {name:?}; plugins may import only the host's log"));
                }
                found.push(name.to_owned());
            }
        }
    }
    Ok(found)
}
