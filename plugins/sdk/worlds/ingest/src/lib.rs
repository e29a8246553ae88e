//! Bindings of the `ingest-plugin` world of `wit/plugin.wit`, re-exported by `rill-plugin-sdk` as
//! `bindings::ingest`. Plugin authors use the SDK, not this crate.

wit_bindgen::generate!({
    path: "../../../../wit",
    world: "ingest-plugin",
    pub_export_macro: true,
    export_macro_name: "export_ingest",
    default_bindings_module: "rill_plugin_sdk::bindings::ingest",
});
